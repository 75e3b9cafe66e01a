"""The Python types of mmengine checkpoints, for weights-only loading.

mmengine 0.10.7 checkpoints store the message hub's HistoryBuffer objects
and numpy scalars/arrays next to the tensors, which
``torch.load(weights_only=True)`` refuses. Rather than turning the safety
off, we allow exactly these types, and only for the duration of one load:
torch's process-wide list of safe globals is left as it was.
"""
import contextlib
import importlib

import torch


def mmengine_checkpoint_types() -> list:
    """The classes and callables an mmengine checkpoint's pickle names.

    Returns:
        list: HistoryBuffer, ``getattr`` (HistoryBuffer pickles its
        ``statistics_methods`` as ``getattr(HistoryBuffer, 'min')``; allowing
        it lets a file look attributes up, while the weights-only unpickler
        still calls nothing but allowed callables), numpy's ndarray, dtype,
        its array-pickling helpers and its dtype classes.
    """
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer

    types = [HistoryBuffer, getattr, np.ndarray, np.dtype]
    # numpy's array pickling helpers (numpy.core in 1.x, numpy._core in 2.x)
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


def allow_mmengine_checkpoints() -> contextlib.AbstractContextManager:
    """A context in which weights-only loading accepts mmengine checkpoints.

    Example:
        >>> with allow_mmengine_checkpoints():
        ...     ckpt = torch.load('epoch_1.pth', weights_only=True)

    On leaving it, torch's list of safe globals is what it was before.
    torch < 2.5 has no such context: there the types are not added and
    weights-only loading refuses checkpoints that hold them.
    """
    if not hasattr(torch.serialization, 'safe_globals'):
        return contextlib.nullcontext()
    return torch.serialization.safe_globals(mmengine_checkpoint_types())
