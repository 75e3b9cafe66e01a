"""The Bi-WKV operator. Depends on torch only.

Importing this package loads the compiled extension, which registers
``torch.ops.mmvrwkv.bi_wkv`` (and its backward) with PyTorch.
"""
from .bi_wkv_chunked import bi_wkv_chunked
from .bi_wkv_op import available_backends, bi_wkv
from .bi_wkv_ref import bi_wkv_reference

__all__ = ['bi_wkv', 'bi_wkv_reference', 'bi_wkv_chunked', 'available_backends']
