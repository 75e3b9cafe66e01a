from .atomic_backend import AtomicLocalBackend, atomic_write, \
    register_atomic_backend
from .checkpoint import (allow_mmengine_checkpoints,
                         check_local_checkpoints)

__all__ = ['allow_mmengine_checkpoints', 'check_local_checkpoints',
           'AtomicLocalBackend', 'atomic_write', 'register_atomic_backend']
