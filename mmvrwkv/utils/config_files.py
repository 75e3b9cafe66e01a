"""Where this package's configs are: ``configs/`` of a source checkout, or
``mmvrwkv/.mim/configs`` of an installed package (OpenMMLab's layout, which
``mim`` reads)."""
import os.path as osp

_PACKAGE = osp.dirname(osp.dirname(osp.abspath(__file__)))


def config_dir() -> str:
    """The folder of this package's configs.

    Raises:
        FileNotFoundError: neither an installed copy nor a checkout's.
    """
    for path in (osp.join(_PACKAGE, '.mim', 'configs'),
                 osp.join(osp.dirname(_PACKAGE), 'configs')):
        if osp.isdir(path):
            return path
    raise FileNotFoundError(
        'mmvrwkv finds no configs: neither mmvrwkv/.mim/configs (an '
        'installed package) nor configs/ beside the package (a checkout); '
        'reinstall mmvrwkv or pass a config path')


def config_path(name: str) -> str:
    """The path of config ``name`` (e.g. 'vrwkv_t_in1k.py' or
    'demo/upernet_vrwkv_demo_shapes.py') of this package.

    Raises:
        FileNotFoundError: no such config.
    """
    path = osp.join(config_dir(), name)
    if not osp.isfile(path):
        raise FileNotFoundError(f'mmvrwkv has no config {name} (in '
                                f'{config_dir()})')
    return path
