"""VRWKV6 with a ViT-Adapter: the VRWKV adapter's modules on the RWKV-6
backbone (no official counterpart exists)."""
from typing import Dict

from mmengine.registry import MODELS

from .base_vrwkv import extend_presets
from .vit_adapter import ADAPTER_PRESETS, ViTAdapterMixin
from .vrwkv6 import VRWKV6


@MODELS.register_module()
class VRWKV6Adapter(ViTAdapterMixin, VRWKV6):
    """VRWKV6 with a ViT-Adapter: a multi-scale backbone for detection and
    segmentation, with the modules, outputs and contract of
    :class:`VRWKVAdapter` (four batch-normalised maps at strides 4-32).

    The official repository has no VRWKV6 adapter, so the presets take the
    same-size VRWKV adapter's settings, which fit because the widths match
    (T 192, S 384, B 768 channels, 12 layers each): deformable attention
    with 6 / 6 / 12 heads and value ratio 1.0 / 1.0 / 0.5, and interaction
    blocks over layers [0-2], [3-5], [6-8], [9-11]. The layer-scale init is
    the VRWKV adapter's too: tiny 1.0 (the VRWKV6-T classifier has no layer
    scale; gamma = 1 starts as the classifier), small and base 1e-5 (as
    the VRWKV6-S/B classifiers). The VRWKV6 ImageNet checkpoints
    (``vrwkv6_{t,s,b}_in1k_224.pth``) load into the backbone part with
    ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')``.

    Args:
        See :class:`ViTAdapterMixin` for the adapter's arguments and
        :class:`VRWKV6` for the backbone's.
    """
    arch_zoo: Dict[str, dict] = extend_presets(
        VRWKV6.arch_zoo, added=ADAPTER_PRESETS,
        replaced=dict.fromkeys(['t', 'tiny'], dict(init_values=1.0)))
