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
