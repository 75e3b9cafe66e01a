"""mmvrwkv: Vision-RWKV for OpenMMLab 2.0.

``import mmvrwkv`` (or ``custom_imports=dict(imports=['mmvrwkv'])`` in a
config) registers the models. The operator in ``mmvrwkv.ops`` needs only
torch; the models need mmengine and mmcv.
"""
from .version import __version__

MMCV_MIN, MMCV_MAX = '2.0.0', '2.2.0'


def _has(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


def _check_mmcv():
    import mmcv
    from mmengine.utils import digit_version
    if not (digit_version(MMCV_MIN) <= digit_version(mmcv.__version__) <
            digit_version(MMCV_MAX)):
        raise ImportError(
            f'mmcv=={mmcv.__version__} is installed but mmvrwkv (like mmdet '
            f'3.x and mmseg 1.x) needs mmcv>={MMCV_MIN},<{MMCV_MAX}; see '
            'tools/setup_env.sh for building mmcv 2.1.0.')


if _has('mmengine') and _has('mmcv'):
    _check_mmcv()
    from . import engine, models  # noqa: F401,E402  registers them
    from .utils import (allow_mmengine_checkpoints, register_atomic_backend,
                        register_safe_loading)
    allow_mmengine_checkpoints()
    # weights-only .pth and .safetensors everywhere; unreadable files named
    register_safe_loading()
    register_atomic_backend()  # checkpoints written to a temp name, renamed

__all__ = ['__version__']
