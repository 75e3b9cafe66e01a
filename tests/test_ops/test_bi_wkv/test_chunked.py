"""bi_wkv_chunked (standard ops only, for export) against the float64 oracle,
the reference and its gradients, at awkward shapes and extreme values."""
import pytest
import torch

from mmvrwkv.ops import bi_wkv_chunked, bi_wkv_reference
from mmvrwkv.ops.common import default_chunk
from ..helpers import (BI_WKV_EXTREMES, assert_rel_close, extreme_inputs,
                       make_inputs, naive_bi_wkv)

# B, T, C: T=1, odd T, T < chunk, T a multiple of the chunk and not
SHAPES = [(1, 1, 1), (2, 1, 3), (2, 7, 5), (3, 37, 19), (1, 196, 33),
          (2, 257, 48), (1, 600, 7)]
ids = [f'B{b}-T{t}-C{c}' for b, t, c in SHAPES]
# None: the default ceil(sqrt(T)); 1: one token per chunk (no intra pairs
# but the token itself); 6; 64 (> T for the short shapes: one chunk)
CHUNKS = [None, 1, 6, 64]


@pytest.mark.parametrize('chunk', CHUNKS, ids=lambda c: f'L{c}')
@pytest.mark.parametrize('shape', SHAPES, ids=ids)
def test_matches_naive_float64(shape, chunk):
    w, u, k, v = make_inputs(*shape, dtype=torch.float64)
    y = bi_wkv_chunked(w, u, k, v, chunk=chunk)
    assert y.dtype == torch.float64 and y.shape == k.shape
    assert_rel_close(y, naive_bi_wkv(w, u, k, v), 1e-12)


@pytest.mark.parametrize('chunk', CHUNKS, ids=lambda c: f'L{c}')
@pytest.mark.parametrize('shape', SHAPES, ids=ids)
def test_matches_naive_float32(shape, chunk):
    w, u, k, v = make_inputs(*shape, dtype=torch.float32)
    y = bi_wkv_chunked(w, u, k, v, chunk=chunk)
    assert y.dtype == torch.float32
    # measured <= 6e-7, as the reference in float32
    assert_rel_close(y, naive_bi_wkv(w, u, k, v), 2e-6)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_inputs_accumulate_in_float32(dtype):
    w, u, k, v = make_inputs(2, 50, 8, dtype=dtype)
    y = bi_wkv_chunked(w, u, k, v, chunk=7)
    assert y.dtype == dtype
    assert torch.equal(y, bi_wkv_chunked(w, u, k.float(), v.float(),
                                         chunk=7).to(dtype))


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64],
                         ids=['fp32', 'fp64'])
@pytest.mark.parametrize('chunk', [None, 7, 64], ids=lambda c: f'L{c}')
@pytest.mark.parametrize('case', list(BI_WKV_EXTREMES),
                         ids=list(BI_WKV_EXTREMES))
def test_extreme_values(case, chunk, dtype):
    """|k| = 1e4 and w from -50 to 1e3 (the compiled kernels' extreme
    test): finite, and as accurate as the kernels' tolerance."""
    spec = BI_WKV_EXTREMES[case]
    w, u, k, v = extreme_inputs(spec['T'], len(spec['w']), dtype,
                                spec['k_scale'], spec['w'])
    for x in (w, u, k, v):
        x.requires_grad_(True)
    y = bi_wkv_chunked(w, u, k, v, chunk=chunk)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    assert_rel_close(y, naive_bi_wkv(w, u, k, v), tol, name='y')
    grads = torch.autograd.grad(y.sum(), (w, u, k, v))
    for name, g in zip('wukv', grads):
        assert torch.isfinite(g).all(), f'grad {name} not finite'


@pytest.mark.parametrize('w_value', [1e3, -1e3])
def test_uniform_extreme_decay_float32(w_value):
    """Every channel decaying (or growing) by 1e3 per token, keys of 1e4:
    exponents up to 3e5 apart, nothing overflows."""
    w, u, k, v = extreme_inputs(300, 4, torch.float32, 1e4,
                                torch.full((4, ), w_value))
    assert_rel_close(bi_wkv_chunked(w, u, k, v), naive_bi_wkv(w, u, k, v),
                     1e-5)


@pytest.mark.parametrize('k_scale', [1., 30., 1e4])
@pytest.mark.parametrize('shape', [(1, 1, 3), (2, 37, 5), (2, 100, 8)],
                         ids=['T1', 'T37', 'T100'])
def test_gradients_match_reference(shape, k_scale):
    """autograd through the chunks gives the reference's gradients (both
    treat each output's maximum exponent as a constant)."""
    ins = make_inputs(*shape, dtype=torch.float64, k_scale=k_scale,
                      requires_grad=True)
    gy = torch.randn(shape, dtype=torch.float64,
                     generator=torch.Generator().manual_seed(1))
    got = torch.autograd.grad(bi_wkv_chunked(*ins, chunk=6), ins, gy)
    want = torch.autograd.grad(bi_wkv_reference(*ins), ins, gy)
    for name, g, r in zip('wukv', got, want):
        # 1e-9: at |k| = 1e4 float64 exponents carry ~1e-12 absolute error
        assert_rel_close(g, r, 1e-9, name=f'grad {name}')


def test_gradients_float32():
    ins = make_inputs(2, 60, 6, requires_grad=True)
    gy = torch.randn(2, 60, 6, generator=torch.Generator().manual_seed(2))
    got = torch.autograd.grad(bi_wkv_chunked(*ins, chunk=9), ins, gy)
    ref_in = [x.detach().double().requires_grad_() for x in ins]
    want = torch.autograd.grad(bi_wkv_reference(*ref_in), ref_in,
                               gy.double())
    for name, g, r in zip('wukv', got, want):
        assert g.dtype == torch.float32
        assert_rel_close(g, r, 1e-5, name=f'grad {name}')


def test_default_chunk():
    assert [default_chunk(t) for t in (1, 2, 4, 5, 196, 197, 1024)] == \
        [1, 2, 2, 3, 14, 15, 32]


def test_bad_arguments():
    w, u, k, v = make_inputs(1, 5, 2)
    with pytest.raises(ValueError, match='chunk must be >= 1'):
        bi_wkv_chunked(w, u, k, v, chunk=0)
    with pytest.raises(ValueError, match=r'\(B, T, C\)'):
        bi_wkv_chunked(w, u, k[0], v[0])


def test_memory_is_subquadratic():
    """No intermediate of T^2 elements: count the largest tensor autograd
    saves at T = 4096 (T^2 C = 16.8M elements; chunks of 64 need
    T * 64 * C = 262k)."""
    T, C, L = 4096, 1, 64
    w, u, k, v = make_inputs(1, T, C, requires_grad=True)
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        bi_wkv_chunked(w, u, k, v, chunk=L)
    assert max(sizes) <= T * L * C
