from .block import RWKVResidualBlock, VRWKV6Block, VRWKVBlock
from .channel_mix import ChannelMix
from .shift import SHIFT_FUNCS, q_shift, q_shift_multihead
from .spatial_mix import SpatialMix
from .spatial_mix_v6 import SpatialMixV6

__all__ = ['VRWKVBlock', 'SpatialMix', 'ChannelMix', 'q_shift', 'SHIFT_FUNCS',
           'RWKVResidualBlock', 'VRWKV6Block', 'SpatialMixV6',
           'q_shift_multihead']
