"""bi_wkv6_chunked (standard ops, no loop: the ONNX export's Bi-WKV6)
against the token loop and the chunked reference: awkward shapes and chunk
lengths, extreme decays, gradients, and a traced graph that does not grow
with the token count."""
import pytest
import torch

from mmvrwkv.ops import bi_wkv6_chunked, bi_wkv6_naive, bi_wkv6_reference
from ..helpers import (BI_WKV6_EXTREMES, BI_WKV6_TOL, assert_rel_close,
                       bi_wkv6_inputs)

# B, T, H, N: T = 1, 2, odd T, T < chunk, T a multiple of the chunk and not
SHAPES = [(1, 1, 1, 8), (2, 2, 2, 4), (2, 15, 3, 8), (1, 37, 2, 16),
          (2, 49, 1, 8), (1, 196, 1, 64)]
IDS = [f'B{b}-T{t}-H{h}-N{n}' for b, t, h, n in SHAPES]
# None: the default ceil(sqrt(T)); 1: one token per chunk (no pairs inside
# a chunk but the token itself); 7; 64 (> T mostly: one chunk)
CHUNKS = [None, 1, 7, 64]


def naive64(r, k, v, w, u):
    return bi_wkv6_naive(*(x.double() for x in (r, k, v, w, u)))


@pytest.mark.parametrize('chunk', CHUNKS, ids=lambda c: f'L{c}')
@pytest.mark.parametrize('shape', SHAPES, ids=IDS)
def test_matches_naive_float64(shape, chunk):
    r, k, v, w, u = bi_wkv6_inputs(*shape, dtype=torch.float64)
    y = bi_wkv6_chunked(r, k, v, w, u, chunk=chunk)
    assert y.dtype == torch.float64 and y.shape == r.shape
    assert_rel_close(y, bi_wkv6_naive(r, k, v, w, u), 1e-12)


@pytest.mark.parametrize('chunk', CHUNKS, ids=lambda c: f'L{c}')
@pytest.mark.parametrize('shape', SHAPES, ids=IDS)
def test_matches_naive_float32(shape, chunk):
    ins = bi_wkv6_inputs(*shape)
    y = bi_wkv6_chunked(*ins, chunk=chunk)
    assert y.dtype == torch.float32
    assert_rel_close(y, naive64(*ins), BI_WKV6_TOL[torch.float32])


@pytest.mark.parametrize('chunk', [None, 7], ids=lambda c: f'L{c}')
@pytest.mark.parametrize('case', list(BI_WKV6_EXTREMES))
def test_extreme_decays(case, chunk):
    """Decays that round to 1, underflow to 0, exp(w) overflowing float32
    (w = 100), mixtures, |k| = 50: finite, and as accurate as the
    kernels."""
    for dtype in (torch.float32, torch.float64):
        ins = bi_wkv6_inputs(2, 37, 2, 8, dtype=dtype,
                             **BI_WKV6_EXTREMES[case])
        y = bi_wkv6_chunked(*ins, chunk=chunk)
        assert_rel_close(y, naive64(*ins), BI_WKV6_TOL[dtype],
                         name=f'{case} {dtype}')


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_inputs_give_float32(dtype):
    """As the operator: float32 out, computed in float32."""
    ins = bi_wkv6_inputs(1, 20, 2, 8, dtype=dtype)
    y = bi_wkv6_chunked(*ins, chunk=6)
    assert y.dtype == torch.float32
    assert torch.equal(y, bi_wkv6_chunked(*(x.float() for x in ins),
                                          chunk=6))


def test_matches_reference_and_its_gradients():
    ins = [x.requires_grad_() for x in
           bi_wkv6_inputs(2, 50, 2, 8, dtype=torch.float64)]
    gy = torch.randn(2, 50, 16, dtype=torch.float64,
                     generator=torch.Generator().manual_seed(1))
    got_y = bi_wkv6_chunked(*ins, chunk=6)
    want_y = bi_wkv6_reference(*ins, chunk_size=16)
    assert_rel_close(got_y, want_y, 1e-12)
    got = torch.autograd.grad(got_y, ins, gy)
    want = torch.autograd.grad(want_y, ins, gy)
    for name, g, w in zip(['gr', 'gk', 'gv', 'gw', 'gu'], got, want):
        assert_rel_close(g, w, 1e-11, name=name)


def test_graph_does_not_grow_with_tokens():
    """No loop over chunks: with the default chunk the traced graph has
    the same operations for 37 and 1000 tokens (the reference unrolls its
    scan: two steps per chunk)."""

    from torch.fx.experimental.proxy_tensor import make_fx

    def ops(T, fn):
        ins = bi_wkv6_inputs(1, T, 1, 8)
        graph = make_fx(lambda r, k, v, w, u: fn(r, k, v, w, u))(*ins).graph
        return [n.target for n in graph.nodes if n.op == 'call_function']

    assert ops(37, bi_wkv6_chunked) == ops(1000, bi_wkv6_chunked)
    assert len(ops(1000, bi_wkv6_reference)) > \
        2 * len(ops(1000, bi_wkv6_chunked))


def test_bad_arguments():
    r, k, v, w, u = bi_wkv6_inputs(1, 5, 2, 4)
    with pytest.raises(ValueError, match='chunk must be >= 1'):
        bi_wkv6_chunked(r, k, v, w, u, chunk=0)
    with pytest.raises(ValueError, match=r'\(B, T, C\)'):
        bi_wkv6_chunked(r, k[0], v, w, u)
    with pytest.raises(ValueError, match='heads \\* head_size'):
        bi_wkv6_chunked(r, k, v, w, u[:1])
