"""The Bi-WKV operator: one entry point over the compiled kernels and the
PyTorch reference. Model code calls only :func:`bi_wkv`.

The compiled kernels are PyTorch operators, ``torch.ops.mmvrwkv.bi_wkv`` and
``torch.ops.mmvrwkv.bi_wkv_backward`` (C++ and CUDA, registered when the
extension loads). This module adds what PyTorch's custom-operator guide asks
of Python: fake (meta) implementations, so that ``torch.compile`` and
``torch.export`` can trace them without running them, and the autograd
formula, through ``torch.library``. Nothing here copies to the host or
branches on tensor values, so a compiled model has no graph break.
"""
import warnings
from typing import Tuple

import torch

from .bi_wkv_ref import bi_wkv_reference
from .op_library import check_floating_tensors, compiled_supports, register_op

BACKENDS = ('auto', 'compiled', 'reference')
_warned_fallback = False


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """w and u are passed to the kernels in the dtype they accumulate in."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check(w, u, k, v):
    check_floating_tensors('bi_wkv', 'wukv', (w, u, k, v))
    if k.dim() != 3:
        raise ValueError(f'bi_wkv: k must have shape (B, T, C), got '
                         f'{tuple(k.shape)}')
    if v.shape != k.shape:
        raise ValueError(f'bi_wkv: v has shape {tuple(v.shape)} but k has '
                         f'{tuple(k.shape)}; they must match')
    C = k.shape[2]
    for name, x in (('w', w), ('u', u)):
        if x.dim() != 1 or x.shape[0] != C:
            raise ValueError(f'bi_wkv: {name} must have shape (C,) = ({C},) '
                             f'to match k, got {tuple(x.shape)}')
    if k.numel() == 0:
        raise ValueError(f'bi_wkv: empty input, k has shape {tuple(k.shape)}')
    if k.dtype != v.dtype:
        raise TypeError(f'bi_wkv: k ({k.dtype}) and v ({v.dtype}) must have '
                        'the same dtype')
    if any(x.device != k.device for x in (w, u, v)):
        raise ValueError('bi_wkv: all inputs must be on one device, got '
                         + ', '.join(str(x.device) for x in (w, u, k, v)))


# ---- torch.library registrations of the compiled operators ---------------
def _fake_forward(w, u, k, v):
    return k.new_empty(k.shape)


def _fake_backward(w, u, k, v, gy):
    return (w.new_empty(w.shape), u.new_empty(u.shape), k.new_empty(k.shape),
            v.new_empty(v.shape))


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, gy):
    w, u, k, v = ctx.saved_tensors
    return torch.ops.mmvrwkv.bi_wkv_backward(w, u, k, v, gy.to(k.dtype))


_HAS_OPS, _HAS_CUDA = register_op('bi_wkv', _fake_forward, _fake_backward,
                                  _backward, _setup_context)


def _compiled_supports(device: torch.device) -> Tuple[bool, str]:
    # reads the flags at each call, so that tests can switch them off
    return compiled_supports('bi_wkv', _HAS_OPS, _HAS_CUDA, device)


def bi_wkv(w: torch.Tensor,
           u: torch.Tensor,
           k: torch.Tensor,
           v: torch.Tensor,
           backend: str = 'auto') -> torch.Tensor:
    """Bidirectional WKV attention of Vision-RWKV.

    For each batch element and channel::

        y[t] = (sum_{i!=t} e^{-(|t-i|-1) w + k[i]} v[i] + e^{u + k[t]} v[t])
             / (sum_{i!=t} e^{-(|t-i|-1) w + k[i]}      + e^{u + k[t]})

    Args:
        w (Tensor): per-channel decay, shape (C,). The VRWKV model passes
            ``spatial_decay / T``.
        u (Tensor): per-channel bonus of the current token, shape (C,). The
            model passes ``spatial_first / T``.
        k (Tensor): keys, shape (B, T, C), float16/bfloat16/float32/float64.
        v (Tensor): values, same shape and dtype as ``k``.
        backend (str): ``'auto'`` (compiled kernel for the tensors' device,
            else the reference with a one-time warning), ``'compiled'``
            (error if unavailable) or ``'reference'``. Defaults to 'auto'.

    Returns:
        Tensor: y, shape (B, T, C), dtype of ``k``. The compiled kernels
        read fp16/bf16 directly and accumulate in float32 (float64 for
        float64 input); w and u are cast to that dtype, and their gradients
        come back in their own dtype.

    Example:
        >>> k, v = torch.randn(2, 196, 192), torch.randn(2, 196, 192)
        >>> w, u = torch.rand(192) / 196, torch.rand(192) / 196
        >>> bi_wkv(w, u, k, v).shape
        torch.Size([2, 196, 192])
    """
    global _warned_fallback
    if backend not in BACKENDS:
        raise ValueError(f'bi_wkv: backend {backend!r} is not one of: '
                         + ', '.join(BACKENDS))
    _check(w, u, k, v)
    if backend == 'reference':
        return bi_wkv_reference(w, u, k, v)
    ok, why = _compiled_supports(k.device)
    if ok:
        acc = _accumulation_dtype(k.dtype)
        return torch.ops.mmvrwkv.bi_wkv(w.to(acc), u.to(acc), k, v)
    if backend == 'compiled':
        raise RuntimeError(f'bi_wkv: compiled backend requested but {why}')
    if not _warned_fallback:
        _warned_fallback = True
        warnings.warn(
            f'bi_wkv: {why}; falling back to the O(T^2) PyTorch reference, '
            'which is much slower. Build the extension with '
            '`pip install --no-build-isolation -e .`.',
            RuntimeWarning,
            stacklevel=2)
    return bi_wkv_reference(w, u, k, v)


def available_backends(device: str = 'cpu') -> Tuple[str, ...]:
    """Backends that can run on ``device`` in this installation."""
    ok, _ = _compiled_supports(torch.device(device))
    return ('compiled', 'reference') if ok else ('reference', )
