"""Bi-WKV6, the token mixing of VRWKV6: the readable references
(:mod:`.reference`: a loop over tokens and a chunked scan), the
standard-operator form without a loop (:mod:`.chunked`), the Python half of
the compiled operator ``torch.ops.mmvrwkv.bi_wkv6`` (:mod:`.library`;
kernels in ``cuda_ops/bi_wkv6/``), flash-linear-attention's kernels as an
optional backend (:mod:`.fla`) and the entry point that chooses among them
(:mod:`.op`)."""
from .chunked import bi_wkv6_chunked
from .fla import bi_wkv6_fla
from .library import bi_wkv6_compiled
from .op import BI_WKV6_BACKENDS, bi_wkv6, bi_wkv6_backends
from .reference import bi_wkv6_naive, bi_wkv6_reference

__all__ = [
    'bi_wkv6', 'bi_wkv6_backends', 'BI_WKV6_BACKENDS', 'bi_wkv6_reference',
    'bi_wkv6_naive', 'bi_wkv6_chunked', 'bi_wkv6_compiled', 'bi_wkv6_fla'
]
