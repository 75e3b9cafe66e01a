"""mmvrwkv: Vision-RWKV for OpenMMLab 2.0.

``import mmvrwkv`` (or ``custom_imports=dict(imports=['mmvrwkv'])`` in a
config) registers the models, hooks, runner and optimizer pieces in
mmengine's registries and checks mmcv's version; it changes nothing else
(no checkpoint loaders, file backends or torch settings). Safe checkpoint
loading is turned on by ``CheckpointSafetyHook`` (the paper configs list
it) or by :func:`mmvrwkv.utils.enable_safe_loading`. The operator in
``mmvrwkv.ops`` needs only torch; the models need mmengine and mmcv.
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

__all__ = ['__version__']
