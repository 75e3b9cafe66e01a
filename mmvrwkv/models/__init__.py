"""Models; importing this registers them in mmengine's root MODELS registry,
which the mmpretrain, mmdet and mmsegmentation registries inherit from."""
from .backbones import (MAEVRWKV, MAEVRWKV6, VRWKV, VRWKV6, VRWKV6Adapter,
                        VRWKVAdapter)
from .layers import ChannelMix, SpatialMix, VRWKVBlock  # noqa: F401
from .necks import VRWKVMAEDecoder

__all__ = [
    'VRWKV', 'VRWKV6', 'VRWKVAdapter', 'VRWKV6Adapter', 'VRWKVBlock',
    'SpatialMix', 'ChannelMix', 'MAEVRWKV', 'MAEVRWKV6', 'VRWKVMAEDecoder'
]
