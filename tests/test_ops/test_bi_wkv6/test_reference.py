"""The Bi-WKV6 reference (VRWKV6's token mixing): the chunked form and the
token loop against a direct float64 sum over token pairs written from the
definition, gradients, dtypes and the entry point's checks."""
import numpy as np
import pytest
import torch

from mmvrwkv.ops import bi_wkv6, bi_wkv6_naive, bi_wkv6_reference
from ..helpers import assert_rel_close


def direct_bi_wkv6(r, k, v, w, u):
    """Independent float64 O(T^2) Bi-WKV6 in numpy, pair by pair:

    y[t, i] = sum_j r[t, j] (u[j] k[t, j] v[t, i]
              + sum_{s != t} prod_{m strictly between s and t}
                             exp(-exp(w[m, j])) k[s, j] v[s, i])

    per batch element and head (u has shape (heads, head_size)).
    """
    r, k, v, w, u = (np.asarray(x.detach().double().cpu())
                     for x in (r, k, v, w, u))
    B, T, C = r.shape
    H, N = u.shape
    r, k, v, w = (x.reshape(B, T, H, N) for x in (r, k, v, w))
    decay = np.exp(-np.exp(w))
    y = np.zeros((B, T, H, N))
    for t in range(T):
        for s in range(T):
            if s == t:
                coef = u[None] * k[:, t]
            else:
                lo, hi = min(s, t), max(s, t)
                coef = np.prod(decay[:, lo + 1:hi], axis=1) * k[:, s]
            # (B, H): sum_j r[t, j] coef[j]; times v[s, i]
            y[:, t] += (r[:, t] * coef).sum(-1)[..., None] * v[:, s]
    return torch.from_numpy(y.reshape(B, T, C))


def make(B, T, H, N, dtype=torch.float64, w_shift=-1.0, seed=0,
         requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    C = H * N
    r, k, v = (torch.randn(B, T, C, generator=g, dtype=torch.float64)
               for _ in range(3))
    w = torch.randn(B, T, C, generator=g, dtype=torch.float64) + w_shift
    u = torch.randn(H, N, generator=g, dtype=torch.float64) * 0.5
    out = [x.to(dtype) for x in (r, k, v, w, u)]
    return [x.requires_grad_(requires_grad) for x in out]


SHAPES = [(1, 1, 1, 64), (2, 1, 2, 8), (2, 2, 1, 16), (2, 15, 3, 8),
          (1, 33, 2, 64), (3, 50, 2, 4)]
IDS = [f'B{b}-T{t}-H{h}-N{n}' for b, t, h, n in SHAPES]


@pytest.mark.parametrize('B, T, H, N', SHAPES, ids=IDS)
def test_naive_matches_direct_sum(B, T, H, N):
    r, k, v, w, u = make(B, T, H, N)
    assert_rel_close(bi_wkv6_naive(r, k, v, w, u),
                     direct_bi_wkv6(r, k, v, w, u), 1e-12, 'naive')


@pytest.mark.parametrize('chunk_size', [1, 4, 16, 64])
@pytest.mark.parametrize('B, T, H, N', SHAPES, ids=IDS)
def test_chunked_matches_direct_sum(B, T, H, N, chunk_size):
    r, k, v, w, u = make(B, T, H, N)
    got = bi_wkv6_reference(r, k, v, w, u, chunk_size=chunk_size)
    assert got.dtype == torch.float64
    assert_rel_close(got, direct_bi_wkv6(r, k, v, w, u), 1e-12,
                     f'chunk {chunk_size}')


@pytest.mark.parametrize('T, chunk_size', [(37, 8), (64, 16), (5, 2),
                                           (20, 7)])
def test_chunked_matches_naive_with_gradients(T, chunk_size):
    """Outputs and every gradient of the chunked form equal the loop's
    (float64), T not a multiple of the chunk included."""
    inputs = make(2, T, 2, 8, requires_grad=True)
    gy = torch.randn(2, T, 16, dtype=torch.float64)
    results = []
    for fn in (bi_wkv6_naive,
               lambda *a: bi_wkv6_reference(*a, chunk_size=chunk_size)):
        for x in inputs:
            x.grad = None
        y = fn(*inputs)
        y.backward(gy)
        results.append([y] + [x.grad.clone() for x in inputs])
    for name, a, b in zip(['y', 'r', 'k', 'v', 'w', 'u'], *results):
        assert_rel_close(a, b, 1e-12, name)


def test_float32_against_direct_sum():
    r, k, v, w, u = make(2, 40, 3, 64)
    want = direct_bi_wkv6(r, k, v, w, u)
    got = bi_wkv6_reference(*(x.float() for x in (r, k, v, w, u)))
    assert got.dtype == torch.float32
    assert_rel_close(got, want, 1e-5, 'float32')


@pytest.mark.parametrize('chunk_size', [16, 2])
def test_gradcheck_float64(chunk_size):
    # T=5 in chunks of 2 crosses chunk boundaries in both directions
    inputs = make(1, 5, 2, 4, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda *a: bi_wkv6_reference(*a, chunk_size=chunk_size), inputs)


def test_gradcheck_naive_float64():
    inputs = make(2, 4, 1, 4, requires_grad=True)
    assert torch.autograd.gradcheck(bi_wkv6_naive, inputs)


def test_first_and_last_decay_do_not_matter():
    """Token 0's decay only scales an empty forward state, token T-1's an
    empty reverse state: their w gradients are exactly zero, as the
    official kernel's (it writes 0 for them)."""
    r, k, v, w, u = make(2, 9, 2, 8, dtype=torch.float32,
                         requires_grad=True)
    bi_wkv6_reference(r, k, v, w, u, chunk_size=4).square().sum().backward()
    assert torch.all(w.grad[:, 0] == 0) and torch.all(w.grad[:, -1] == 0)
    assert torch.all(w.grad[:, 1:-1].abs().sum(-1) > 0)


def test_no_decay_between_neighbours():
    """With w = 100 (decay exp(-exp(100)) = 0, exp(100) overflows float32)
    a token sees only itself (with u) and its two neighbours (nothing is
    between them), and nothing is NaN."""
    r, k, v, w, u = make(1, 12, 2, 8, dtype=torch.float32)
    w = torch.full_like(w, 100.)
    y = bi_wkv6_reference(r, k, v, w, u, chunk_size=5)
    rh, kh, vh = (x.reshape(1, 12, 2, 8) for x in (r, k, v))
    want = torch.zeros(1, 12, 2, 8)
    for t in range(12):
        want[:, t] = (rh[:, t] * u * kh[:, t]).sum(-1, True) * vh[:, t]
        for s in (t - 1, t + 1):
            if 0 <= s < 12:
                want[:, t] += (rh[:, t] * kh[:, s]).sum(-1, True) * vh[:, s]
    assert torch.isfinite(y).all()
    assert_rel_close(y, want.reshape(1, 12, 16), 1e-6, 'neighbours')


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16],
                         ids=['fp16', 'bf16'])
def test_half_input_computes_and_returns_float32(dtype):
    inputs = make(2, 20, 2, 8, dtype=dtype)
    got = bi_wkv6_reference(*inputs)
    assert got.dtype == torch.float32
    want = bi_wkv6_reference(*(x.float() for x in inputs))
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_entry_point_reference_backend():
    """backend='reference' runs the reference itself (the compiled kernels
    are compared with it in test_compiled.py)."""
    inputs = make(2, 14, 3, 64, dtype=torch.float32)
    torch.testing.assert_close(bi_wkv6(*inputs, backend='reference'),
                               bi_wkv6_reference(*inputs), rtol=0, atol=0)


@pytest.mark.parametrize('change, error, match', [
    (dict(k=torch.randn(2, 5, 8)), ValueError, r'k has shape \(2, 5, 8\)'),
    (dict(w=torch.randn(2, 5)), ValueError, 'must all be'),
    (dict(r=torch.randn(2, 5 * 16)), ValueError, r'r must have shape'),
    (dict(u=torch.randn(16)), ValueError, r'u must have shape \(heads'),
    (dict(u=torch.randn(3, 4)), ValueError, 'heads \\* head_size = C = 16'),
    (dict(v=torch.ones(2, 5, 16, dtype=torch.int64)), TypeError,
     'v must be a floating-point'),
    (dict(r=torch.randn(2, 0, 16), k=torch.randn(2, 0, 16),
          v=torch.randn(2, 0, 16), w=torch.randn(2, 0, 16)), ValueError,
     'empty input'),
    (dict(backend='cuda'), ValueError, "backend 'cuda' is not one of"),
])
def test_entry_point_errors(change, error, match):
    args = dict(r=torch.randn(2, 5, 16), k=torch.randn(2, 5, 16),
                v=torch.randn(2, 5, 16), w=torch.randn(2, 5, 16),
                u=torch.randn(2, 8))
    args.update(change)
    with pytest.raises(error, match=match):
        bi_wkv6(**args)
