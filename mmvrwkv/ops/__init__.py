"""The Bi-WKV and Bi-WKV6 operators. Depend on torch only.

Importing this package loads the compiled extension, which registers
``torch.ops.mmvrwkv.bi_wkv`` and ``torch.ops.mmvrwkv.bi_wkv6`` (and their
backward ops) with PyTorch.
"""
from .bi_wkv6_chunked import bi_wkv6_chunked
from .bi_wkv6_op import bi_wkv6, bi_wkv6_available_backends
from .bi_wkv6_ref import bi_wkv6_naive, bi_wkv6_reference
from .bi_wkv_chunked import bi_wkv_chunked
from .bi_wkv_op import available_backends, bi_wkv
from .bi_wkv_ref import bi_wkv_reference

__all__ = [
    'bi_wkv', 'bi_wkv_reference', 'bi_wkv_chunked', 'available_backends',
    'bi_wkv6', 'bi_wkv6_reference', 'bi_wkv6_naive', 'bi_wkv6_chunked',
    'bi_wkv6_available_backends'
]
