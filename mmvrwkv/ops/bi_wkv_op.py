"""The Bi-WKV operator: one entry point over the compiled kernels and the
PyTorch reference. Model code calls only :func:`bi_wkv`."""
import warnings
from typing import Tuple

import torch

from .bi_wkv_ref import bi_wkv_reference
from .ext_loader import load_ext, load_error

BACKENDS = ('auto', 'compiled', 'reference')
_warned_fallback = False


def _check(w, u, k, v):
    for name, x in (('w', w), ('u', u), ('k', k), ('v', v)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f'bi_wkv: {name} must be a torch.Tensor, '
                            f'got {type(x).__name__}')
        if not x.is_floating_point():
            raise TypeError(f'bi_wkv: {name} must be a floating-point tensor, '
                            f'got dtype {x.dtype}')
    if k.dim() != 3:
        raise ValueError(f'bi_wkv: k must have shape (B, T, C), got '
                         f'{tuple(k.shape)}')
    if v.shape != k.shape:
        raise ValueError(f'bi_wkv: v has shape {tuple(v.shape)} but k has '
                         f'{tuple(k.shape)}; they must match')
    C = k.shape[2]
    for name, x in (('w', w), ('u', u)):
        if x.shape != (C, ):
            raise ValueError(f'bi_wkv: {name} must have shape (C,) = ({C},) '
                             f'to match k, got {tuple(x.shape)}')
    if k.numel() == 0:
        raise ValueError(f'bi_wkv: empty input, k has shape {tuple(k.shape)}')
    if k.dtype != v.dtype:
        raise TypeError(f'bi_wkv: k ({k.dtype}) and v ({v.dtype}) must have '
                        'the same dtype')
    devices = {x.device for x in (w, u, k, v)}
    if len(devices) > 1:
        raise ValueError('bi_wkv: all inputs must be on one device, got '
                         + ', '.join(sorted(map(str, devices))))


class BiWKVFunction(torch.autograd.Function):
    """Autograd wrapper of the compiled kernels (fp32 accumulation; the
    kernels read fp16/bf16 k and v directly and write y in their dtype)."""

    @staticmethod
    def forward(ctx, w, u, k, v):
        ext = load_ext()
        acc = torch.float64 if k.dtype == torch.float64 else torch.float32
        ctx.w_dtype, ctx.u_dtype = w.dtype, u.dtype
        w_ = w.detach().to(acc).contiguous()
        u_ = u.detach().to(acc).contiguous()
        k, v = k.contiguous(), v.contiguous()
        ctx.save_for_backward(w_, u_, k, v)
        return ext.bi_wkv_forward(w_, u_, k, v)

    @staticmethod
    def backward(ctx, gy):
        w_, u_, k, v = ctx.saved_tensors
        gy = gy.to(k.dtype).contiguous()
        gw, gu, gk, gv = load_ext().bi_wkv_backward(w_, u_, k, v, gy)
        return gw.to(ctx.w_dtype), gu.to(ctx.u_dtype), gk, gv


def _compiled_supports(device: torch.device) -> Tuple[bool, str]:
    ext = load_ext()
    if ext is None:
        return False, f'the compiled extension is not available ({load_error()})'
    if device.type == 'cpu':
        return True, ''
    if device.type == 'cuda':
        if ext.has_cuda():
            return True, ''
        return False, 'mmvrwkv was built without CUDA kernels'
    return False, f'no compiled kernel for device type {device.type!r}'


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
        Tensor: y, shape (B, T, C), dtype of ``k``.

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
        return BiWKVFunction.apply(w, u, k, v)
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
