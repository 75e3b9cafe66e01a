from .checkpoint import allow_mmengine_checkpoints
from .safe_loading import (load_checkpoint_file, register_safe_loading,
                           save_safetensors)

__all__ = [
    'allow_mmengine_checkpoints', 'load_checkpoint_file',
    'register_safe_loading', 'save_safetensors'
]
