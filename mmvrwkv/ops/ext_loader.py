"""Loads the compiled extension ``mmvrwkv._ext`` built by setup.py.

Nothing is compiled here: a missing or broken build leaves ``load_ext()``
returning ``None`` and the reason in ``load_error()``.
"""
import importlib
from typing import Optional

_FUNCTIONS = ('bi_wkv_forward', 'bi_wkv_backward', 'has_cuda', 'cpu_isa',
              'cpu_threads')
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


def load_error() -> Optional[str]:
    """Why the extension could not be loaded (None if it loaded)."""
    load_ext()
    return _error
