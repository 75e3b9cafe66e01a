"""The Bi-WKV6 operator's entry point: input checks and the choice of
backend. Model code calls only :func:`bi_wkv6`."""
from typing import Tuple

import torch

from ..common.dispatch import Backend, Dispatcher
from ..common.library import check_floating_tensors, check_one_device
from .chunked import bi_wkv6_chunked
from .fla import bi_wkv6_fla, fla_unsupported
from .library import BI_WKV6, bi_wkv6_compiled
from .reference import bi_wkv6_reference

# 'compiled': the C++/CUDA kernels; 'fla': flash-linear-attention's Triton
# kernels (CUDA, optional; never chosen by 'auto' until a GPU has timed it
# against 'compiled'); 'chunked': standard operators, no loop (every device,
# ONNX export); 'reference': the readable chunked scan
BI_WKV6_BACKENDS = Dispatcher(
    'bi_wkv6', {
        'compiled': Backend(bi_wkv6_compiled, BI_WKV6.unsupported,
                            exportable=False),
        'fla': Backend(bi_wkv6_fla, fla_unsupported, exportable=False),
        'chunked': Backend(bi_wkv6_chunked),
        'reference': Backend(bi_wkv6_reference),
    },
    preferred=('compiled', ),
    fallback='chunked',
    argument='wkv_backend')


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
    check_one_device('bi_wkv6', names, (r, k, v, w, u))


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
            device, else ``'chunked'`` with a one-time warning; during ONNX
            export ``'chunked'``), ``'compiled'`` (an error where it cannot
            run), ``'fla'`` (flash-linear-attention's Triton kernels on
            CUDA; ``pip install -e .[fla]``), ``'chunked'`` (standard
            operators, any device, exports to ONNX) or ``'reference'``.
            Defaults to 'auto'.

    Returns:
        Tensor: shape (B, T, C), float32 (float64 for float64 ``r``),
        whatever the input dtype, as the official kernel writes float32.
        Every backend reads float16/bfloat16 inputs and accumulates in
        float32 (float64 for float64 ``r``); when r, k, v and w differ in
        dtype they are all computed in it (as the reference does).
        Gradients come back in each input's own dtype.

    Example:
        >>> r, k, v, w = torch.randn(4, 2, 196, 192).unbind(0)
        >>> bi_wkv6(r, k, v, w, torch.randn(3, 64)).shape
        torch.Size([2, 196, 192])
    """
    BI_WKV6_BACKENDS.check_name(backend)
    _check(r, k, v, w, u)
    return BI_WKV6_BACKENDS.select(backend, r.device, r.dtype)(r, k, v, w, u)


def bi_wkv6_backends(device='cpu') -> Tuple[str, ...]:
    """Bi-WKV6 backends that run on ``device`` in this installation."""
    return BI_WKV6_BACKENDS.available(device)
