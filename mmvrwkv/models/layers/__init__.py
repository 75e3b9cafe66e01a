from .block import VRWKVBlock
from .channel_mix import ChannelMix
from .cpu_sync_bn import CPUSyncBatchNorm, convert_to_cpu_sync_bn
from .shift import SHIFT_FUNCS, q_shift
from .spatial_mix import SpatialMix

__all__ = ['VRWKVBlock', 'SpatialMix', 'ChannelMix', 'q_shift', 'SHIFT_FUNCS',
           'CPUSyncBatchNorm', 'convert_to_cpu_sync_bn']
