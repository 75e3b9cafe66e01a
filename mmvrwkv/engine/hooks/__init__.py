from .checkpoint_safety_hook import CheckpointSafetyHook
from .rng_state_hook import RNGStateHook, get_rng_state, set_rng_state

__all__ = [
    'CheckpointSafetyHook', 'RNGStateHook', 'get_rng_state', 'set_rng_state'
]
