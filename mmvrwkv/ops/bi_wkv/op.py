"""The Bi-WKV operator's entry point: input checks and the choice of
backend. Model code calls only :func:`bi_wkv`."""
from typing import Tuple

import torch

from ..common.dispatch import Backend, Dispatcher
from ..common.library import check_floating_tensors, check_one_device
from .chunked import bi_wkv_chunked
from .library import BI_WKV, bi_wkv_compiled
from .reference import bi_wkv_reference

# 'compiled': the C++/CUDA kernels; 'chunked': standard operators, O(T^1.5)
# (every device, ONNX export); 'reference': the readable O(T^2) oracle
BI_WKV_BACKENDS = Dispatcher(
    'bi_wkv', {
        'compiled': Backend(bi_wkv_compiled, BI_WKV.unsupported,
                            exportable=False),
        'chunked': Backend(bi_wkv_chunked),
        'reference': Backend(bi_wkv_reference),
    },
    preferred=('compiled', ),
    fallback='chunked',
    argument='wkv_backend')


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
    check_one_device('bi_wkv', 'wukv', (w, u, k, v))


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
        backend (str): ``'auto'`` (the compiled kernel for the tensors'
            device, else ``'chunked'`` with a one-time warning; during ONNX
            export ``'chunked'``), ``'compiled'`` (an error where it cannot
            run), ``'chunked'`` (standard operators, any device, exports to
            ONNX) or ``'reference'`` (the O(T^2) definition). Defaults to
            'auto'.

    Returns:
        Tensor: y, shape (B, T, C), dtype of ``k``. Every backend reads
        fp16/bf16 and accumulates in float32 (float64 for float64 input);
        the gradients of w and u come back in their own dtype.

    Example:
        >>> k, v = torch.randn(2, 196, 192), torch.randn(2, 196, 192)
        >>> w, u = torch.rand(192) / 196, torch.rand(192) / 196
        >>> bi_wkv(w, u, k, v).shape
        torch.Size([2, 196, 192])
    """
    BI_WKV_BACKENDS.check_name(backend)
    _check(w, u, k, v)
    return BI_WKV_BACKENDS.select(backend, k.device, k.dtype)(w, u, k, v)


def bi_wkv_backends(device='cpu') -> Tuple[str, ...]:
    """Bi-WKV backends that run on ``device`` in this installation."""
    return BI_WKV_BACKENDS.available(device)
