"""The Bi-WKV operator. Depends on torch only."""
from .bi_wkv_op import BiWKVFunction, available_backends, bi_wkv
from .bi_wkv_ref import bi_wkv_reference

__all__ = ['bi_wkv', 'bi_wkv_reference', 'BiWKVFunction', 'available_backends']
