from .atomic_backend import (AtomicLocalBackend, atomic_write,
                             register_atomic_backend)
from .checkpoint import allow_mmengine_checkpoints
from .config_files import config_dir, config_path
from .safe_loading import (enable_safe_loading, load_checkpoint_file,
                           save_safetensors)

__all__ = [
    'allow_mmengine_checkpoints', 'load_checkpoint_file',
    'enable_safe_loading', 'save_safetensors', 'AtomicLocalBackend',
    'atomic_write', 'register_atomic_backend', 'config_dir', 'config_path'
]
