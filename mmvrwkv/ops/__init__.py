"""The operators of Vision-RWKV, one folder each (``bi_wkv/``,
``bi_wkv6/``, ``ms_deform_attn/``: reference, standard-operator form,
compiled operator, entry point with its backends; ``README.md`` says how to
add one). Depends on torch only; optional backends import their library
when they run.

Importing this package loads the compiled extension, which registers
``torch.ops.mmvrwkv.bi_wkv`` and ``torch.ops.mmvrwkv.bi_wkv6`` (and their
backward ops) with PyTorch, and defines ``torch.ops.mmvrwkv.ms_deform_attn``.
"""
from .bi_wkv import (BI_WKV_BACKENDS, bi_wkv, bi_wkv_backends, bi_wkv_chunked,
                     bi_wkv_reference)
from .bi_wkv6 import (BI_WKV6_BACKENDS, bi_wkv6, bi_wkv6_backends,
                      bi_wkv6_chunked, bi_wkv6_naive, bi_wkv6_reference)
from .ms_deform_attn import (MS_DEFORM_ATTN_BACKENDS, ms_deform_attn,
                             ms_deform_attn_backends, ms_deform_attn_reference)

__all__ = [
    'bi_wkv', 'bi_wkv_backends', 'BI_WKV_BACKENDS', 'bi_wkv_reference',
    'bi_wkv_chunked', 'bi_wkv6', 'bi_wkv6_backends', 'BI_WKV6_BACKENDS',
    'bi_wkv6_reference', 'bi_wkv6_naive', 'bi_wkv6_chunked',
    'ms_deform_attn', 'ms_deform_attn_backends', 'MS_DEFORM_ATTN_BACKENDS',
    'ms_deform_attn_reference'
]
