"""Training-time components registered in mmengine's root registries."""
from .hooks import RNGStateHook
from .optimizers import CPUAmpOptimWrapper, LayerDecayOptimWrapperConstructor
from .runner import PortableRunner

__all__ = ['LayerDecayOptimWrapperConstructor', 'CPUAmpOptimWrapper',
           'PortableRunner', 'RNGStateHook']
