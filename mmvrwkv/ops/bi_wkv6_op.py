"""The Bi-WKV6 operator of VRWKV6: one entry point over the compiled kernels
and the PyTorch reference. Model code calls only :func:`bi_wkv6`.

The compiled kernels are PyTorch operators, ``torch.ops.mmvrwkv.bi_wkv6`` and
``torch.ops.mmvrwkv.bi_wkv6_backward`` (C++ and CUDA, registered when the
extension loads, see ``cuda_ops/bi_wkv_library.cpp``). This module adds, as
for Bi-WKV (:mod:`.bi_wkv_op`), their fake (meta) implementations, so that
``torch.compile`` and ``torch.export`` trace them without running them, and
their autograd formula, through ``torch.library``. Nothing here copies to the
host or branches on tensor values, so a compiled model has no graph break.
"""
import warnings
from typing import Tuple

import torch

from .bi_wkv6_ref import bi_wkv6_reference
from .op_library import check_floating_tensors, compiled_supports, register_op

BACKENDS = ('auto', 'compiled', 'reference')
_warned_fallback = False


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The kernels accumulate, and write y, in float32 (float64 for float64
    input); u is passed in that dtype."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check(r, k, v, w, u):
    names = ('r', 'k', 'v', 'w', 'u')
    check_floating_tensors('bi_wkv6', names, (r, k, v, w, u))
    if r.dim() != 3:
        raise ValueError(f'bi_wkv6: r must have shape (B, T, C), got '
                         f'{tuple(r.shape)}')
    for name, x in zip(names[1:4], (k, v, w)):
        if x.shape != r.shape:
            raise ValueError(f'bi_wkv6: {name} has shape {tuple(x.shape)} '
                             f'but r has {tuple(r.shape)}; r, k, v and w '
                             'must all be (B, T, C)')
    C = r.shape[2]
    if u.dim() != 2 or u.shape[0] * u.shape[1] != C:
        raise ValueError(f'bi_wkv6: u must have shape (heads, head_size) '
                         f'with heads * head_size = C = {C}, got '
                         f'{tuple(u.shape)}')
    if r.numel() == 0:
        raise ValueError(f'bi_wkv6: empty input, r has shape '
                         f'{tuple(r.shape)}')
    if any(x.device != r.device for x in (k, v, w, u)):
        raise ValueError('bi_wkv6: all inputs must be on one device, got '
                         + ', '.join(str(x.device) for x in (r, k, v, w, u)))


# ---- torch.library registrations of the compiled operators ---------------
def _fake_forward(r, k, v, w, u):
    return r.new_empty(r.shape, dtype=_accumulation_dtype(r.dtype))


def _fake_backward(r, k, v, w, u, gy):
    return (r.new_empty(r.shape), k.new_empty(k.shape), v.new_empty(v.shape),
            w.new_empty(w.shape), u.new_empty(u.shape))


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, gy):
    r, k, v, w, u = ctx.saved_tensors
    return torch.ops.mmvrwkv.bi_wkv6_backward(
        r, k, v, w, u, gy.to(_accumulation_dtype(r.dtype)))


_HAS_OPS, _HAS_CUDA = register_op('bi_wkv6', _fake_forward, _fake_backward,
                                  _backward, _setup_context)


def _compiled_supports(device: torch.device) -> Tuple[bool, str]:
    # reads the flags at each call, so that tests can switch them off
    return compiled_supports('bi_wkv6', _HAS_OPS, _HAS_CUDA, device)


def _compiled(r, k, v, w, u):
    """The kernels take r, k, v, w of one dtype and u in the accumulation
    dtype. Mixed inputs (e.g. a float32 w beside bfloat16 r under autocast)
    all go in r's accumulation dtype, which is what the reference computes
    in, so no input loses precision."""
    acc = _accumulation_dtype(r.dtype)
    if not (k.dtype == v.dtype == w.dtype == r.dtype):
        r, k, v, w = (x.to(acc) for x in (r, k, v, w))
    return torch.ops.mmvrwkv.bi_wkv6(r, k, v, w, u.to(acc))


def bi_wkv6(r: torch.Tensor,
            k: torch.Tensor,
            v: torch.Tensor,
            w: torch.Tensor,
            u: torch.Tensor,
            backend: str = 'auto') -> torch.Tensor:
    """Bidirectional RWKV-6 attention of VRWKV6 (the official ``WKV_6``).

    Per batch element and head, with ``d[m] = exp(-exp(w[m]))``::

        y[t, i] = sum_j r[t, j] (u[j] k[t, j] v[t, i]
                  + sum_{s != t} prod_{m strictly between s, t} d[m, j]
                                 k[s, j] v[s, i])

    Args:
        r (Tensor): receptance, shape (B, T, C), float16, bfloat16, float32
            or float64.
        k (Tensor): keys, shape (B, T, C).
        v (Tensor): values, shape (B, T, C).
        w (Tensor): data-dependent decay parameter, shape (B, T, C).
        u (Tensor): bonus of the current token, shape (H, C // H); VRWKV6
            uses heads of 64 channels.
        backend (str): ``'auto'`` (the compiled kernel for the tensors'
            device, else the PyTorch reference with a one-time warning),
            ``'compiled'`` (error if unavailable) or ``'reference'``.
            Defaults to 'auto'.

    Returns:
        Tensor: shape (B, T, C), float32 (float64 for float64 ``r``),
        whatever the input dtype, as the official kernel writes float32.
        The compiled kernels read float16/bfloat16 inputs directly and
        accumulate in that dtype; when r, k, v and w differ in dtype they are
        all computed in it (as the reference does). Gradients come back in
        each input's own dtype.

    Example:
        >>> r, k, v, w = torch.randn(4, 2, 196, 192).unbind(0)
        >>> bi_wkv6(r, k, v, w, torch.randn(3, 64)).shape
        torch.Size([2, 196, 192])
    """
    global _warned_fallback
    if backend not in BACKENDS:
        raise ValueError(f'bi_wkv6: backend {backend!r} is not one of: '
                         + ', '.join(BACKENDS))
    _check(r, k, v, w, u)
    if backend == 'reference':
        return bi_wkv6_reference(r, k, v, w, u)
    ok, why = _compiled_supports(r.device)
    if ok:
        return _compiled(r, k, v, w, u)
    if backend == 'compiled':
        raise RuntimeError(f'bi_wkv6: compiled backend requested but {why}')
    if not _warned_fallback:
        _warned_fallback = True
        warnings.warn(
            f'bi_wkv6: {why}; falling back to the PyTorch reference, which '
            'is about 10x slower. Build the extension with '
            '`pip install --no-build-isolation -e .`.',
            RuntimeWarning,
            stacklevel=2)
    return bi_wkv6_reference(r, k, v, w, u)


def bi_wkv6_available_backends(device: str = 'cpu') -> Tuple[str, ...]:
    """Bi-WKV6 backends that can run on ``device`` in this installation."""
    ok, _ = _compiled_supports(torch.device(device))
    return ('compiled', 'reference') if ok else ('reference', )
