from .base_vrwkv import VisionRWKVBase, extend_presets
from .mae_vrwkv import MAEVRWKV, MAEVRWKV6, MaskedPretrainMixin
from .vit_adapter import ADAPTER_PRESETS, ViTAdapterMixin
from .vrwkv import VRWKV, resize_pos_embed
from .vrwkv6 import VRWKV6
from .vrwkv6_adapter import VRWKV6Adapter
from .vrwkv_adapter import VRWKVAdapter

__all__ = [
    'VRWKV', 'VRWKVAdapter', 'VRWKV6', 'VRWKV6Adapter', 'VisionRWKVBase',
    'ViTAdapterMixin', 'ADAPTER_PRESETS', 'extend_presets',
    'resize_pos_embed', 'MAEVRWKV', 'MAEVRWKV6', 'MaskedPretrainMixin'
]
