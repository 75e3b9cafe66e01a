"""Bi-WKV, the token mixing of VRWKV: the readable reference
(:mod:`.reference`), the standard-operator chunked form (:mod:`.chunked`),
the Python half of the compiled operator ``torch.ops.mmvrwkv.bi_wkv``
(:mod:`.library`; kernels in ``cuda_ops/bi_wkv/``) and the entry point that
chooses among them (:mod:`.op`)."""
from .chunked import bi_wkv_chunked
from .library import bi_wkv_compiled
from .op import BI_WKV_BACKENDS, bi_wkv, bi_wkv_backends
from .reference import bi_wkv_reference

__all__ = [
    'bi_wkv', 'bi_wkv_backends', 'BI_WKV_BACKENDS', 'bi_wkv_reference',
    'bi_wkv_chunked', 'bi_wkv_compiled'
]
