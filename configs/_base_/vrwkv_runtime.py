# Runtime settings shared by the mmvrwkv paper configs, on top of the host
# library's default_runtime.py.
custom_imports = dict(imports=['mmvrwkv'], allow_failed_imports=False)

# PortableRunner: the same config trains data-parallel (gloo) and with --amp
# (bfloat16) on CPU-only machines. RNGStateHook puts the random-number state
# in checkpoints so --resume continues exactly. CheckpointSafetyHook loads
# every checkpoint weights-only (init_cfg, load_from, --resume, --checkpoint;
# .safetensors too) and registers the 'atomic_local' file backend, through
# which the configs write checkpoints to a temporary name and rename them
# (docs/reliability.md). That backend is named in each config's own
# default_hooks.checkpoint: the host's default runtime (or schedule) defines
# default_hooks too, and mmengine refuses a key that two bases both define.
runner_type = 'PortableRunner'
custom_hooks = [dict(type='CheckpointSafetyHook'), dict(type='RNGStateHook')]
