"""What the Python side adds to a compiled operator pair
``torch.ops.mmvrwkv.<name>`` / ``<name>_backward`` (schemas and kernels
registered in C++, ``cuda_ops/<name>/``): the fake (meta) implementations
and the autograd formula through ``torch.library``, and whether the
kernels run on a device. Shared by every compiled operator, with the input
type checks of their entry points.
"""
from typing import Callable, Optional, Sequence

import torch

from .ext_loader import has_op, load_error, load_ext


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the kernels accumulate in for inputs of ``dtype``:
    float64 for float64, float32 for every other floating dtype."""
    return torch.float64 if dtype == torch.float64 else torch.float32


class CompiledOp:
    """The compiled kernels of one operator, as the dispatcher sees them.

    Registers the fake implementations of ``mmvrwkv::<name>`` and
    ``mmvrwkv::<name>_backward`` and the forward's autograd formula if the
    extension holds them.

    Args:
        name (str): the operator, ``torch.ops.mmvrwkv.<name>``.
        fake_forward, fake_backward (callable): shapes and dtypes of the
            outputs (``torch.library.register_fake``).
        backward, setup_context (callable): the autograd formula
            (``torch.library.register_autograd``).

    Attributes:
        registered (bool): the extension holds both operators.
        has_cuda (bool): the extension was built with CUDA kernels.
    """

    def __init__(self, name: str, fake_forward: Callable,
                 fake_backward: Callable, backward: Callable,
                 setup_context: Callable):
        self.name = name
        ext = load_ext()
        self.registered = ext is not None and has_op(name, f'{name}_backward')
        self.has_cuda = self.registered and bool(ext.has_cuda())
        if self.registered:
            torch.library.register_fake(f'mmvrwkv::{name}', fake_forward)
            torch.library.register_fake(f'mmvrwkv::{name}_backward',
                                        fake_backward)
            torch.library.register_autograd(f'mmvrwkv::{name}', backward,
                                            setup_context=setup_context)

    def unsupported(self, device: torch.device,
                    dtype: Optional[torch.dtype] = None) -> Optional[str]:
        """None if the kernels run on ``device``, else why not (read at
        each call, so that tests can switch the flags off)."""
        if not self.registered:
            why = load_error() or f'it has no {self.name} operator'
            return ('the compiled extension is not available '
                    f'({why}); build it with `pip install '
                    '--no-build-isolation -e .`')
        if device.type == 'cpu':
            return None
        if device.type == 'cuda':
            return None if self.has_cuda else \
                'mmvrwkv was built without CUDA kernels (build it where ' \
                'nvcc is found, or with FORCE_CUDA=1)'
        return f'no compiled kernel for device type {device.type!r}'


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


def check_one_device(op: str, names: Sequence[str],
                     tensors: Sequence[torch.Tensor]) -> None:
    """Raise a ValueError unless ``tensors`` are all on one device."""
    if any(x.device != tensors[0].device for x in tensors[1:]):
        raise ValueError(f'{op}: all inputs must be on one device, got '
                         + ', '.join(f'{n} on {x.device}'
                                     for n, x in zip(names, tensors)))
