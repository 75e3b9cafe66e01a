"""Loads the compiled extension ``mmvrwkv._ext`` built by setup.py.

Nothing is compiled here. Loading the extension registers its operators
(``torch.ops.mmvrwkv.bi_wkv``, ``bi_wkv6`` and their backward ops) with
PyTorch's dispatcher. A missing or broken build leaves ``load_ext()``
returning ``None`` and the reason in ``load_error()``; whether an operator
is there, :func:`has_op` says (a build older than an operator lacks it).
"""
import importlib
from typing import Optional

import torch

_FUNCTIONS = ('has_cuda', 'cpu_isa', 'cpu_threads')
_ext = None
_error: Optional[str] = None
_loaded = False


def load_ext():
    """Return the extension module, or None if it cannot be used."""
    global _ext, _error, _loaded
    if not _loaded:
        _loaded = True
        try:
            module = importlib.import_module('mmvrwkv._ext')
            missing = [f for f in _FUNCTIONS if not hasattr(module, f)]
            if missing:
                raise ImportError(
                    f'mmvrwkv._ext lacks {missing}; rebuild it with '
                    '`pip install --no-build-isolation -e .`')
            _ext = module
        except ImportError as e:  # not built, or built against another torch
            _error = str(e)
    return _ext


def has_op(*names: str) -> bool:
    """Whether the loaded extension registered all the operators
    ``torch.ops.mmvrwkv.<name>``."""
    return load_ext() is not None and all(
        hasattr(torch.ops.mmvrwkv, name) for name in names)


def load_error() -> Optional[str]:
    """Why the extension could not be loaded (None if it loaded)."""
    load_ext()
    return _error
