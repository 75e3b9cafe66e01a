"""Safe loading of mmengine checkpoints with ``torch.load(weights_only=True)``.

torch >= 2.6 loads with ``weights_only=True`` by default, and mmengine 0.10.7
does not pass the flag, so its own checkpoints (which store the message hub's
HistoryBuffer objects and numpy scalars/arrays) fail to load. Rather than
turning the safety off, we allowlist exactly the types those checkpoints hold.
"""
import importlib

import torch

_done = False


def _checkpoint_globals():
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer

    # HistoryBuffer pickles its ``statistics_methods`` as
    # getattr(HistoryBuffer, 'min') etc. Allowing getattr only lets a file
    # look up attributes: the weights-only unpickler still calls nothing but
    # allowlisted callables.
    types = [HistoryBuffer, getattr, np.ndarray, np.dtype]
    # numpy's array pickling helpers (numpy.core in 1.x, numpy._core in 2.x).
    try:
        multiarray = importlib.import_module('numpy._core.multiarray')
    except ImportError:
        multiarray = importlib.import_module('numpy.core.multiarray')
    types += [multiarray._reconstruct, multiarray.scalar]
    # dtype classes such as numpy.dtypes.Float64DType (numpy >= 1.25)
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        types += [
            getattr(dtypes, name) for name in dir(dtypes)
            if name.endswith('DType')
        ]
    return types


def allow_mmengine_checkpoints() -> None:
    """Allow the types of mmengine checkpoints in weights-only loading.

    Idempotent; called when ``mmvrwkv`` is imported with mmengine installed.
    """
    global _done
    if _done or not hasattr(torch.serialization, 'add_safe_globals'):
        return
    torch.serialization.add_safe_globals(_checkpoint_globals())
    _done = True


def _load_from_local_checked(filename, map_location=None):
    """mmengine's local checkpoint loader, with an error that names the file
    when it is not a readable checkpoint (truncated download, interrupted
    write, some other file). torch's own message ("failed finding central
    directory", "invalid load key") names neither."""
    import os.path as osp
    import pickle
    import zipfile

    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    try:
        return torch.load(filename, map_location=map_location)
    except (RuntimeError, pickle.UnpicklingError, EOFError, KeyError,
            zipfile.BadZipFile) as error:
        if 'weights_only' in str(error) and 'Unsupported global' in str(
                error):
            raise  # a real checkpoint holding an unexpected type
        size = osp.getsize(filename)
        first = (str(error).splitlines() or [''])[0]
        raise RuntimeError(
            f'{filename} ({size} bytes) is not a readable PyTorch checkpoint'
            f' ({type(error).__name__}: {first}). It '
            'is truncated (an interrupted download or copy) or not a '
            'checkpoint at all: download or copy it again, or point to '
            'another file.') from error


def check_local_checkpoints() -> None:
    """Make mmengine's loader for local paths (``load_from``, ``--resume``,
    ``init_cfg=dict(type='Pretrained')``) say which file is unreadable."""
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(
        prefixes='', loader=_load_from_local_checked, force=True)
