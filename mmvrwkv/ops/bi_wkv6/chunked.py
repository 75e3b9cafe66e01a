"""Bi-WKV6 from standard tensor operations without a loop, for export
(ONNX, other graph compilers) where the compiled kernels cannot go.

:func:`~mmvrwkv.ops.bi_wkv6_reference` already uses standard operations
only, but it carries the N x N state from chunk to chunk in a Python loop,
which a trace unrolls: two steps per chunk, so a graph that grows with the
token count (126 steps per block at 1024 tokens), and an ONNX exporter that
takes minutes to optimise it. :func:`bi_wkv6_chunked` computes the same
sums with a fixed sequence of operations whose shapes depend only on
(B, T, C), the head size and the chunk length:

* pairs of tokens in one chunk: as the reference, a (L, L) matrix per chunk
  and head from the decays between the two tokens;
* pairs in different chunks: each chunk's contribution to the state that
  leaves it forwards (backwards), ``sum_s P(s, edge) k_s v_s^T``, as the
  reference; then, instead of the scan over chunks, the state entering
  chunk c is ``sum_{c'} D[c, c'] * state leaving c'`` with ``D[c, c'][j]``
  the decay of key channel j over all the chunks strictly between c' and c
  (zero for c' on the other side): a (n, n, N) tensor per head and one
  batched matrix product over the key channels.

As in the reference, every decay is ``exp`` of a sum of log-decays
``-exp(w)`` (all <= 0) over the tokens it spans, accumulated by cumulative
sums that never subtract: nothing overflows and nothing cancels, for any w
(``exp(w)`` overflowing to inf gives a decay of exactly 0).

Memory and time per head, L = chunk length, n = ceil(T / L) chunks:
O(T L N) for the chunk blocks, O(n^2 N) for D and O(n^2 N^2) multiply-adds
for the states; the default L = ceil(sqrt(T)) makes that O(T^1.5 N + T N^2).
"""
import math
from typing import Optional

import torch

from ..common.chunks import default_chunk
from .reference import (_chunks, _decays_between, _exclusive_cumsum, _heads,
                        _within_chunks)


def bi_wkv6_chunked(r: torch.Tensor,
                    k: torch.Tensor,
                    v: torch.Tensor,
                    w: torch.Tensor,
                    u: torch.Tensor,
                    chunk: Optional[int] = None) -> torch.Tensor:
    """Bi-WKV6 in chunks, from standard tensor operations and without a
    loop (exportable; the graph does not grow with the token count).

    Same result as :func:`~mmvrwkv.ops.bi_wkv6_reference` and
    :func:`~mmvrwkv.ops.bi_wkv6_naive` up to rounding, differentiable by
    autograd.

    Args:
        r (Tensor): receptance, shape (B, T, C), C = H * N.
        k (Tensor): keys, shape (B, T, C).
        v (Tensor): values, shape (B, T, C).
        w (Tensor): log-log decay per token and channel, shape (B, T, C):
            token m decays channel j by ``exp(-exp(w[m, j]))``.
        u (Tensor): bonus of the current token, shape (H, N).
        chunk (int, optional): tokens per chunk L. Defaults to
            ceil(sqrt(T)).

    Returns:
        Tensor: y, shape (B, T, C), float32 (float64 for float64 ``r``),
        as ``torch.ops.mmvrwkv.bi_wkv6``.

    Example:
        >>> r, k, v, w = torch.randn(4, 2, 196, 128).unbind(0)
        >>> bi_wkv6_chunked(r, k, v, w, torch.randn(2, 64)).shape
        torch.Size([2, 196, 128])
    """
    if r.dim() != 3 or any(x.shape != r.shape for x in (k, v, w)):
        raise ValueError('bi_wkv6_chunked: r, k, v and w must all have '
                         'shape (B, T, C), got '
                         + ', '.join(str(tuple(x.shape))
                                     for x in (r, k, v, w)))
    B, T, C = r.shape
    if u.dim() != 2 or u.shape[0] * u.shape[1] != C:
        raise ValueError(f'bi_wkv6_chunked: u must have shape (heads, '
                         f'head_size) with heads * head_size = C = {C}, got '
                         f'{tuple(u.shape)}')
    if chunk is None:
        chunk = default_chunk(T)
    if int(chunk) < 1:
        raise ValueError(f'bi_wkv6_chunked: chunk must be >= 1, got {chunk}')
    r, k, v, lw, u = _heads(r, k, v, w, u)
    L = max(1, min(int(chunk), T))
    n = math.ceil(T / L)

    r, k, v, lw = _chunks((r, k, v, lw), L)

    y = _within_chunks(r, k, v, lw, u)

    # -- pairs in different chunks
    before = _exclusive_cumsum(lw, dim=-2)                 # m in chunk, m < t
    after = _exclusive_cumsum(lw, dim=-2, reverse=True)    # m in chunk, m > t
    # what chunk c' adds to the state leaving it forwards / backwards
    kv_fwd = (k * torch.exp(after)).transpose(-2, -1) @ v  # (B, H, n, N, N)
    kv_bwd = (k * torch.exp(before)).transpose(-2, -1) @ v
    # D[c, c'][j]: decay over the chunks strictly between c' and c
    decay = torch.exp(_decays_between(lw.sum(-2)))         # (B, H, n, n, N)
    idx = torch.arange(n, device=r.device)
    earlier = (idx[None, :] < idx[:, None])[:, :, None]   # [c, c', 1]: c' < c
    d_fwd = torch.where(earlier, decay, 0.)
    d_bwd = torch.where(earlier.transpose(0, 1), decay, 0.)
    # states entering chunk c from before / after: (B, H, n, N, N)
    fwd = torch.einsum('...cdj,...dji->...cji', d_fwd, kv_fwd)
    bwd = torch.einsum('...cdj,...dji->...cji', d_bwd, kv_bwd)
    y = y + (r * torch.exp(before)) @ fwd + (r * torch.exp(after)) @ bwd

    y = y.permute(0, 2, 3, 1, 4).reshape(B, n * L, C)
    return y[:, :T]
