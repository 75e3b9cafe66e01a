"""Multi-scale deformable attention sampling, the core of the ViT-Adapter's
injectors and extractors: the standard-operator reference
(:mod:`.reference`, ``grid_sample``; it is also the exportable form), mmcv's
CUDA kernels as the PyTorch operator ``torch.ops.mmvrwkv.ms_deform_attn``
(:mod:`.library`; mmcv is imported only when they run) and the entry point
that chooses between them (:mod:`.op`)."""
from .library import mmcv_unsupported, ms_deform_attn_compiled
from .op import (MS_DEFORM_ATTN_BACKENDS, ms_deform_attn,
                 ms_deform_attn_backends)
from .reference import ms_deform_attn_reference

__all__ = [
    'ms_deform_attn', 'ms_deform_attn_backends', 'MS_DEFORM_ATTN_BACKENDS',
    'ms_deform_attn_reference', 'ms_deform_attn_compiled', 'mmcv_unsupported'
]
