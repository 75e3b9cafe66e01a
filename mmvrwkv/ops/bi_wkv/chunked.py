"""Bi-WKV from standard tensor operations only, for export (ONNX, other
graph compilers) where the compiled kernels cannot go.

Same definition as :func:`.reference.bi_wkv_reference`, including the
normalisation by the largest exponent of each output and the 1e-6 added to
the normalised denominator, but without the reference's O(T^2) memory and
without any loop: the graph is a fixed sequence of broadcasts, ``where``,
``amax``, ``exp`` and ``sum`` whose shapes depend only on (B, T, C) and the
chunk length.

Algorithm (L = chunk length, N = ceil(T / L) chunks; T is padded to N * L
with tokens whose keys are -1e30, so that their weights are exactly zero).
For output token t = n * L + a the exponents ``x[t, i] + k[i]`` split into
three groups, each summarised by its own maximum ``M``,
``num = sum e^{. - M} v`` and ``den = sum e^{. - M}``:

* intra: tokens i of chunk n, the token itself with ``u + k[t]`` included,
  directly as a (B, N, L, L, C) block;
* left: tokens of chunks n' < n. Every chunk is first summarised as seen from
  its right edge (``k[i] - (L - 1 - b) w`` for its token b); chunk n'
  contributes to chunk n with exponent ``mR[n'] - (n - n' - 1) L w``,
  combined over n' in a (B, N, N, C) block; token a of chunk n then sees the
  whole group shifted by ``- a w``;
* right: the mirror image (summaries from the left edge, ``k[i] - b w``;
  token a sees them shifted by ``-(L - 1 - a) w``).

The per-token maximum of the three group maxima is the maximum over all
exponents, so rescaling the three groups to it gives exactly the reference's
normalised numerator and denominator. Every ``exp`` has a non-positive
argument (a value minus a maximum that includes it), so nothing overflows for
any k and w; an empty group (no chunk to the left of the first) carries a
large negative maximum and zero sums.

Memory: O(B C (T L + N^2)) = O(B T L C) for L >= T^(1/3); the default
L = ceil(sqrt(T)) gives O(B C T^1.5) memory and time.

The maxima are constants of normalisation, not differentiated (as in the
reference and the compiled kernels), so autograd gives the reference's
gradients.
"""
from typing import Optional

import torch
import torch.nn.functional as F

from ..common.chunks import default_chunk
from ..common.library import accumulation_dtype
from .reference import EPS

# Maximum of an empty group and key of a padding token. Far below any real
# exponent (|k| + |w| T stays many orders of magnitude smaller) and far from
# the float32 limit, so that adding decays to it neither reaches a real value
# nor overflows.
_EMPTY = -1e30


def _group(e: torch.Tensor, dim: int):
    """Maximum of the exponents ``e`` over ``dim`` (detached, dim kept) and
    the weights ``e^{e - max}``."""
    m = e.detach().amax(dim=dim, keepdim=True)
    return m, torch.exp(e - m)


def _masked_group(e: torch.Tensor, valid: torch.Tensor, dim: int):
    """:func:`_group` over the entries where ``valid`` (broadcastable to e);
    a group with none has maximum ``_EMPTY`` and zero weights."""
    e = torch.where(valid, e, _EMPTY)
    m = e.detach().amax(dim=dim, keepdim=True)
    return m, torch.where(valid, torch.exp(e - m), 0.)


def bi_wkv_chunked(w: torch.Tensor,
                   u: torch.Tensor,
                   k: torch.Tensor,
                   v: torch.Tensor,
                   chunk: Optional[int] = None) -> torch.Tensor:
    """Bi-WKV in chunks, from standard tensor operations (exportable).

    Args:
        w (Tensor): decay, shape (C,).
        u (Tensor): bonus of the current token, shape (C,).
        k (Tensor): keys, shape (B, T, C).
        v (Tensor): values, shape (B, T, C).
        chunk (int, optional): tokens per chunk L; larger is fewer, bigger
            blocks. Defaults to ceil(sqrt(T)).

    Returns:
        Tensor: shape (B, T, C), dtype of ``k``. Computed in float32
        (float64 for float64 input), differentiable by autograd.
    """
    if k.dim() != 3 or v.shape != k.shape:
        raise ValueError('bi_wkv_chunked: k and v must both have shape '
                         f'(B, T, C), got {tuple(k.shape)} and '
                         f'{tuple(v.shape)}')
    B, T, C = k.shape
    if chunk is None:
        chunk = default_chunk(T)
    if int(chunk) < 1:
        raise ValueError(f'bi_wkv_chunked: chunk must be >= 1, got {chunk}')
    L = min(int(chunk), T)
    N = -(-T // L)
    pad = N * L - T
    acc = accumulation_dtype(k.dtype)
    dev = k.device
    w, u, kk, vv = (x.to(acc) for x in (w, u, k, v))
    if pad:
        # padding keys of _EMPTY: their weights are exactly 0 wherever a
        # real token is in the group, which every group below has (each
        # chunk holds at least one real token), so they need no mask
        kk = F.pad(kk, (0, 0, 0, pad), value=_EMPTY)
        vv = F.pad(vv, (0, 0, 0, pad))
    kk = kk.reshape(B, N, L, C)
    vv = vv.reshape(B, N, L, C)

    pos = torch.arange(L, device=dev)
    pos_f = pos.to(acc)[:, None]  # (L, 1)

    # intra-chunk pairs (a = output, b = input), own token included:
    # (B, N, L, L, C)
    dist = (pos[:, None] - pos[None, :]).abs().to(acc)[..., None]  # (L,L,1)
    x = torch.where(dist == 0, u, -(dist - 1) * w)  # (L, L, C)
    m_in, p = _group(kk[:, :, None] + x, dim=3)
    m_in = m_in.squeeze(3)
    num_in, den_in = (p * vv[:, :, None]).sum(3), p.sum(3)
    del p

    # each chunk seen from its right edge (for the chunks after it) and from
    # its left edge (for the chunks before it): (B, N, C)
    mR, p = _group(kk - (L - 1 - pos_f) * w, dim=2)
    numR, denR = (p * vv).sum(2), p.sum(2)
    mL, p = _group(kk - pos_f * w, dim=2)
    numL, denL = (p * vv).sum(2), p.sum(2)
    mR, mL = mR.squeeze(2), mL.squeeze(2)

    # chunk n' -> chunk n, seen at the first token of chunk n (left group,
    # n' < n) or at its last token (right group, n' > n): (B, N, N', C)
    idx = torch.arange(N, device=dev)
    src, dst = idx[None, :], idx[:, None]  # (1, N'), (N, 1)
    gap = (((dst - src).abs() - 1) * L).to(acc)[..., None]  # (N, N', 1)
    left, right = (src < dst)[..., None], (src > dst)[..., None]
    m_left, q = _masked_group(mR[:, None] - gap * w, left, dim=2)
    num_left = (q * numR[:, None]).sum(2)
    den_left = (q * denR[:, None]).sum(2)
    m_right, q = _masked_group(mL[:, None] - gap * w, right, dim=2)
    num_right = (q * numL[:, None]).sum(2)
    den_right = (q * denL[:, None]).sum(2)
    del q

    # per token: shift the group maxima to the token, rescale to the overall
    # maximum and combine
    m_left = m_left - pos_f * w  # (B, N, 1, C) -> (B, N, L, C)
    m_right = m_right - (L - 1 - pos_f) * w
    m = torch.maximum(m_in, torch.maximum(m_left, m_right)).detach()
    s_in = torch.exp(m_in - m)
    s_left = torch.exp(m_left - m)
    s_right = torch.exp(m_right - m)
    num = s_in * num_in + s_left * num_left[:, :, None] + \
        s_right * num_right[:, :, None]
    den = s_in * den_in + s_left * den_left[:, :, None] + \
        s_right * den_right[:, :, None]
    y = (num / (den + EPS)).reshape(B, N * L, C)
    if pad:
        y = y[:, :T]
    return y.to(k.dtype)
