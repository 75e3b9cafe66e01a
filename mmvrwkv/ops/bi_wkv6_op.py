"""The Bi-WKV6 operator of VRWKV6: one entry point, so that model code does
not know which implementation runs. Today that is the PyTorch reference
(:mod:`.bi_wkv6_ref`); compiled kernels will be dispatched from here."""
import torch

from .bi_wkv6_ref import bi_wkv6_reference

BACKENDS = ('auto', 'reference')


def _check(r, k, v, w, u):
    names = ('r', 'k', 'v', 'w', 'u')
    for name, x in zip(names, (r, k, v, w, u)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f'bi_wkv6: {name} must be a torch.Tensor, '
                            f'got {type(x).__name__}')
        if not x.is_floating_point():
            raise TypeError(f'bi_wkv6: {name} must be a floating-point '
                            f'tensor, got dtype {x.dtype}')
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
        r (Tensor): receptance, shape (B, T, C).
        k (Tensor): keys, shape (B, T, C).
        v (Tensor): values, shape (B, T, C).
        w (Tensor): data-dependent decay parameter, shape (B, T, C).
        u (Tensor): bonus of the current token, shape (H, C // H); VRWKV6
            uses heads of 64 channels.
        backend (str): ``'auto'`` or ``'reference'`` (both run the PyTorch
            reference for now). Defaults to 'auto'.

    Returns:
        Tensor: shape (B, T, C), float32 (float64 for float64 input), as
        the official kernel writes float32 whatever the input dtype.

    Example:
        >>> r, k, v, w = torch.randn(4, 2, 196, 192).unbind(0)
        >>> bi_wkv6(r, k, v, w, torch.randn(3, 64)).shape
        torch.Size([2, 196, 192])
    """
    if backend not in BACKENDS:
        raise ValueError(f'bi_wkv6: backend {backend!r} is not one of: '
                         + ', '.join(BACKENDS))
    _check(r, k, v, w, u)
    return bi_wkv6_reference(r, k, v, w, u)
