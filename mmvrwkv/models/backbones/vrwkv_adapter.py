"""VRWKV with a ViT-Adapter (the official ``VRWKV_Adapter``)."""
from typing import Dict

from mmengine.registry import MODELS

from .base_vrwkv import extend_presets
from .vit_adapter import ADAPTER_PRESETS, ViTAdapterMixin
from .vrwkv import VRWKV


@MODELS.register_module()
class VRWKVAdapter(ViTAdapterMixin, VRWKV):
    """Vision-RWKV with a ViT-Adapter (the official ``VRWKV_Adapter``): a
    multi-scale backbone for detection and segmentation.

    Parameter names follow the official adapter, so its detection and
    segmentation checkpoints load unchanged, and a VRWKV ImageNet
    checkpoint loads into the backbone part (``init_cfg=dict(
    type='Pretrained', checkpoint=..., prefix='backbone.')``).

    Presets: :class:`VRWKV`'s, plus :data:`ADAPTER_PRESETS` of the same
    size, and the layer-scale init of the official detection and
    segmentation configs, which differs from the classifiers': tiny 1.0
    (the classifier has no layer scale; gamma = 1 starts as the
    classifier) and small 1e-5 (the classifier 1.0). The large preset
    pretrains at 192 px: pass ``img_size=192``.

    Args:
        See :class:`ViTAdapterMixin` for the adapter's arguments and
        :class:`VRWKV` for the backbone's.
    """
    arch_zoo: Dict[str, dict] = extend_presets(
        VRWKV.arch_zoo, added=ADAPTER_PRESETS,
        replaced={**dict.fromkeys(['t', 'tiny'], dict(init_values=1.0)),
                  **dict.fromkeys(['s', 'small'], dict(init_values=1e-5))})
