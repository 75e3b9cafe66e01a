"""What the Python side adds to each compiled operator pair
``torch.ops.mmvrwkv.<name>`` / ``<name>_backward`` (registered in C++ by
``cuda_ops/bi_wkv_library.cpp``), shared by :mod:`.bi_wkv_op` and
:mod:`.bi_wkv6_op`: the fake (meta) implementations and the autograd formula
through ``torch.library``, and whether the compiled kernels can run on a
device; and the input type checks of both entries.
"""
from typing import Callable, Sequence, Tuple

import torch

from .ext_loader import has_op, load_error, load_ext


def register_op(name: str, fake_forward: Callable, fake_backward: Callable,
                backward: Callable, setup_context: Callable
                ) -> Tuple[bool, bool]:
    """Register the Python parts of ``mmvrwkv::<name>`` and
    ``mmvrwkv::<name>_backward`` if the extension has them.

    Returns:
        tuple[bool, bool]: (operators usable, CUDA kernels built).
    """
    ext = load_ext()
    if ext is None or not has_op(name, f'{name}_backward'):
        return False, False
    torch.library.register_fake(f'mmvrwkv::{name}', fake_forward)
    torch.library.register_fake(f'mmvrwkv::{name}_backward', fake_backward)
    torch.library.register_autograd(f'mmvrwkv::{name}', backward,
                                    setup_context=setup_context)
    return True, bool(ext.has_cuda())


def compiled_supports(name: str, has_ops: bool, has_cuda: bool,
                      device: torch.device) -> Tuple[bool, str]:
    """Whether the compiled kernels of ``name`` run on ``device``, and if
    not, why (for the fallback warning and the 'compiled' backend's
    error)."""
    if not has_ops:
        why = load_error() or (f'it has no {name} operator; rebuild it with '
                               '`pip install --no-build-isolation -e .`')
        return False, f'the compiled extension is not available ({why})'
    if device.type == 'cpu':
        return True, ''
    if device.type == 'cuda':
        if has_cuda:
            return True, ''
        return False, 'mmvrwkv was built without CUDA kernels'
    return False, f'no compiled kernel for device type {device.type!r}'


def check_floating_tensors(op: str, names: Sequence[str],
                           tensors: Sequence) -> None:
    """Raise a TypeError naming ``op`` and the input unless every one of
    ``tensors`` is a floating-point tensor."""
    for name, x in zip(names, tensors):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f'{op}: {name} must be a torch.Tensor, '
                            f'got {type(x).__name__}')
        if not x.is_floating_point():
            raise TypeError(f'{op}: {name} must be a floating-point tensor, '
                            f'got dtype {x.dtype}')
