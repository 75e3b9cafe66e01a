"""Training-time components registered in mmengine's root registries: the
runner, hooks, optimizer wrappers and the CPU data-parallel pieces."""
from .distributed import CPUSyncBatchNorm
from .hooks import CheckpointSafetyHook, RNGStateHook
from .optimizers import CPUAmpOptimWrapper, LayerDecayOptimWrapperConstructor
from .runner import PortableRunner

__all__ = ['LayerDecayOptimWrapperConstructor', 'CPUAmpOptimWrapper',
           'CPUSyncBatchNorm', 'CheckpointSafetyHook', 'PortableRunner',
           'RNGStateHook']
