"""Plain PyTorch Bi-WKV6, the token mixing of VRWKV6: the readable
definition (:func:`bi_wkv6_naive`, a loop over tokens), a chunked form with
the same arithmetic (:func:`bi_wkv6_reference`), test oracle and fallback.

Bi-WKV6 is a forward RWKV-6 scan plus a reverse scan, per head of N
channels (64 in VRWKV6) with an N x N state. With the decay
``d[m, j] = exp(-exp(w[m, j]))`` of token m and key channel j, for each
batch element and head::

    y[t, i] = sum_j r[t, j] * (u[j] k[t, j] v[t, i]
                               + sum_{s != t} P(s, t)[j] k[s, j] v[s, i])

    P(s, t)[j] = prod of d[m, j] over the tokens m strictly between s and t

i.e. the current token counts once, weighted by u; every other token is
decayed by the tokens between it and t, in either direction. There is no
denominator and no normalisation, and the decays of the first and the last
token never matter. This is what the official ``WKV_6`` wrapper and
``cuda_v6/wkv6_cuda.cu`` of OpenGVLab/Vision-RWKV compute.
"""
import math

import torch

from ..common.library import accumulation_dtype


def _heads(r, k, v, w, u):
    """(B, T, C) inputs as (B, T, H, N) in the accumulation dtype, and the
    log-decay ``-exp(w)`` (always <= 0)."""
    B, T, C = r.shape
    H, N = u.shape
    acc = accumulation_dtype(r.dtype)
    r, k, v, w = (x.to(acc).reshape(B, T, H, N) for x in (r, k, v, w))
    return r, k, v, -torch.exp(w), u.to(acc)


def bi_wkv6_naive(r: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  w: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Bi-WKV6 as two scans over the tokens, the readable definition.

    The forward scan carries ``S = sum_{s<t} P(s, t) k_s v_s^T`` (N x N per
    head) and adds ``r_t (u * k_t v_t^T + S)``; the reverse scan carries the
    same sum over ``s > t`` and adds ``r_t S``. Both update
    ``S <- diag(d_t) S + k_t v_t^T`` after reading it. O(T N^2) per head,
    one Python step per token: for tests and for reading, see
    :func:`bi_wkv6_reference` for the fast form.

    Args, returns: as :func:`bi_wkv6_reference`.
    """
    B, T, C = r.shape
    r, k, v, lw, u = _heads(r, k, v, w, u)
    decay = torch.exp(lw)
    H, N = u.shape
    state = r.new_zeros(B, H, N, N)  # [key channel j, value channel i]
    forward = []
    for t in range(T):
        kv = k[:, t, :, :, None] * v[:, t, :, None, :]
        forward.append(torch.einsum('bhj,bhji->bhi', r[:, t],
                                    u[:, :, None] * kv + state))
        state = decay[:, t, :, :, None] * state + kv
    state = r.new_zeros(B, H, N, N)
    reverse = [None] * T
    for t in reversed(range(T)):
        reverse[t] = torch.einsum('bhj,bhji->bhi', r[:, t], state)
        kv = k[:, t, :, :, None] * v[:, t, :, None, :]
        state = decay[:, t, :, :, None] * state + kv
    y = torch.stack(forward, 1) + torch.stack(reverse, 1)
    return y.reshape(B, T, C)


def _exclusive_cumsum(x: torch.Tensor, dim: int,
                      reverse: bool = False) -> torch.Tensor:
    """Sum of the elements strictly before (after, if reverse) each one,
    without subtracting (the log-decays are all <= 0, so this adds numbers
    of one sign: no cancellation)."""
    if reverse:
        return _exclusive_cumsum(x.flip(dim), dim).flip(dim)
    shifted = torch.cat([torch.zeros_like(x.narrow(dim, 0, 1)),
                         x.narrow(dim, 0, x.shape[dim] - 1)], dim)
    return shifted.cumsum(dim)


def _chunks(xs, L: int):
    """(B, T, H, N) tensors -> (B, H, n, L, N), n = ceil(T / L), zero
    padded at the end. Padding tokens have r = k = v = 0 (they add nothing)
    and log-decay 0; they come after every real token, so they are never
    between two."""
    B, T, H, N = xs[0].shape
    n = math.ceil(T / L)
    return tuple(
        torch.nn.functional.pad(x, (0, 0, 0, 0, 0, n * L - T)).reshape(
            B, n, L, H, N).permute(0, 3, 1, 2, 4) for x in xs)


def _decays_between(lw: torch.Tensor) -> torch.Tensor:
    """``lw`` (..., m, N), log-decays per position and channel ->
    (..., m, m, N): entry [a, b] is the sum of ``lw`` over the positions
    strictly between a and b (0 for neighbours and for a = b). For b < a
    it is the running sum over a of lw[a - 1], from a = b + 2 on (a masked
    cumulative sum, no subtraction); the matrix is symmetric."""
    m = lw.shape[-2]
    idx = torch.arange(m, device=lw.device)
    apart = (idx[None, :] < idx[:, None] - 1)[:, :, None]  # [a, b, 1]
    lw_prev = torch.cat([torch.zeros_like(lw[..., :1, :]), lw[..., :-1, :]],
                        -2)
    between = torch.where(apart, lw_prev[..., :, None, :], 0.).cumsum(-3)
    return between + between.transpose(-3, -2)


def _within_chunks(r, k, v, lw, u):
    """The pairs of tokens in the same chunk, (B, H, n, L, N) chunked
    tensors (:func:`_chunks`) -> (B, H, n, L, N): y = A v with A[t, s] =
    sum_j r_t k_s P(s, t) for s != t (``P``: the decay between them,
    :func:`_decays_between`) and sum_j r_t u k_t on the diagonal."""
    L = r.shape[-2]
    A = torch.einsum('...tj,...sj,...tsj->...ts', r, k,
                     torch.exp(_decays_between(lw)))
    diag = torch.einsum('...tj,...tj->...t', r * u[:, None, None], k)
    eye = torch.eye(L, dtype=torch.bool, device=r.device)
    A = torch.where(eye, torch.diag_embed(diag), A)
    return A @ v


def bi_wkv6_reference(r: torch.Tensor,
                      k: torch.Tensor,
                      v: torch.Tensor,
                      w: torch.Tensor,
                      u: torch.Tensor,
                      chunk_size: int = 16) -> torch.Tensor:
    """Bi-WKV6 in chunks of tokens: pairs inside a chunk directly, the rest
    through the N x N states between chunks (one Python step per chunk).

    Same result as :func:`bi_wkv6_naive` up to rounding. Every decay
    product is ``exp`` of a sum of log-decays (all <= 0) over the tokens it
    spans, so nothing overflows, and the sums never subtract. Differentiable
    by autograd (the gradients of the first and last token's ``w`` are
    exactly zero, as in the official kernel).

    Args:
        r (Tensor): receptance, shape (B, T, C), C = H * N.
        k (Tensor): keys, shape (B, T, C).
        v (Tensor): values, shape (B, T, C).
        w (Tensor): log-log decay per token and channel, shape (B, T, C):
            token m decays channel j by ``exp(-exp(w[m, j]))`` (the official
            wrapper passes ``-exp(w)`` to its kernel, which multiplies the
            state by ``exp`` of it).
        u (Tensor): bonus of the current token (``time_faaaa``), shape
            (H, N); it sets the head count H and the head size N.
        chunk_size (int): tokens per chunk; the chunk pairs take
            B * H * T * chunk_size * N elements. Defaults to 16.

    Returns:
        Tensor: y, shape (B, T, C), float32 (float64 for float64 ``r``),
        as the official kernel, which writes float32 whatever its input.
        Any floating dtype is accepted; computed in that accumulation dtype.

    Example:
        >>> r, k, v, w = torch.randn(4, 2, 196, 128).unbind(0)
        >>> u = torch.randn(2, 64)
        >>> bi_wkv6_reference(r, k, v, w, u).shape
        torch.Size([2, 196, 128])
    """
    B, T, C = r.shape
    r, k, v, lw, u = _heads(r, k, v, w, u)
    H, N = u.shape
    L = max(1, min(chunk_size, T))
    n = math.ceil(T / L)

    r, k, v, lw = _chunks((r, k, v, lw), L)

    y = _within_chunks(r, k, v, lw, u)

    # -- pairs in different chunks, through the states at the boundaries
    before = _exclusive_cumsum(lw, dim=-2)                 # m in chunk, m < t
    after = _exclusive_cumsum(lw, dim=-2, reverse=True)    # m in chunk, m > t
    through = torch.exp(lw.sum(-2))[..., :, None]          # (B, H, n, N, 1)
    # what a chunk adds to the state leaving it forwards / backwards
    kv_fwd = (k * torch.exp(after)).transpose(-2, -1) @ v  # (B, H, n, N, N)
    kv_bwd = (k * torch.exp(before)).transpose(-2, -1) @ v
    fwd = [r.new_zeros(B, H, N, N)]
    for c in range(n - 1):
        fwd.append(through[:, :, c] * fwd[-1] + kv_fwd[:, :, c])
    bwd = [r.new_zeros(B, H, N, N)]
    for c in range(n - 1, 0, -1):
        bwd.append(through[:, :, c] * bwd[-1] + kv_bwd[:, :, c])
    fwd = torch.stack(fwd, 2)          # state entering chunk c from before
    bwd = torch.stack(bwd[::-1], 2)    # state entering chunk c from after
    y = y + (r * torch.exp(before)) @ fwd + (r * torch.exp(after)) @ bwd

    y = y.permute(0, 2, 3, 1, 4).reshape(B, n * L, C)
    return y[:, :T]
