from .cpu_amp_optim_wrapper import CPUAmpOptimWrapper, cpu_amp_config
from .layer_decay_optim_wrapper_constructor import \
    LayerDecayOptimWrapperConstructor

__all__ = ['LayerDecayOptimWrapperConstructor', 'CPUAmpOptimWrapper',
           'cpu_amp_config']
