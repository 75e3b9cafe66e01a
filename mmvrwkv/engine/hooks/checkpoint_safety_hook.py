"""Turn on safe checkpoint loading and atomic writes when a run starts."""
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ...utils.atomic_backend import register_atomic_backend
from ...utils.safe_loading import enable_safe_loading


@HOOKS.register_module()
class CheckpointSafetyHook(Hook):
    """Load checkpoints weights-only and allow atomic checkpoint writes.

    In ``before_run``, which every runner calls before it initialises the
    weights (``init_cfg``) and before ``load_from``/``resume`` in training,
    validation and testing, the hook

    - registers mmvrwkv's checkpoint loaders with mmengine
      (:func:`mmvrwkv.utils.enable_safe_loading`): local files and URLs load
      with ``weights_only=True``, ``.safetensors`` files are accepted and an
      unreadable file is named in the error;
    - registers the ``'atomic_local'`` file backend
      (:func:`mmvrwkv.utils.register_atomic_backend`), so that
      ``default_hooks.checkpoint.backend_args=dict(backend='atomic_local')``
      writes each checkpoint to a temporary name and renames it.

    Both stay registered for the rest of the process. The paper configs
    list this hook (``configs/_base_/vrwkv_runtime.py``); any other config
    turns it on with ``custom_hooks = [dict(type='CheckpointSafetyHook')]``.
    """

    priority = 'VERY_HIGH'  # before other hooks' before_run

    def before_run(self, runner) -> None:
        enable_safe_loading()
        register_atomic_backend()
