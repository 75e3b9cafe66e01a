"""Data-parallel training on CPU processes: gloo process group,
synchronised BatchNorm without CUDA, DDP without device ids."""
from .cpu_sync_bn import CPUSyncBatchNorm, convert_to_cpu_sync_bn
from .data_parallel import wrap_cpu_ddp
from .process_group import (LAUNCHERS, init_cpu_process_group,
                            torch_env_from_slurm)

__all__ = ['CPUSyncBatchNorm', 'convert_to_cpu_sync_bn', 'wrap_cpu_ddp',
           'init_cpu_process_group', 'torch_env_from_slurm', 'LAUNCHERS']
