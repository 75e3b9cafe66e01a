"""The Bi-WKV reference (the readable O(T^2) definition) against an
independent float64 oracle straight from the formula, in numpy."""
import pytest
import torch

from mmvrwkv.ops import bi_wkv_reference
from ..helpers import assert_rel_close, make_inputs, naive_bi_wkv

# B, T, C: T=1, odd C, T not a multiple of any chunk size, C < 16 and > 32
SHAPES = [(1, 1, 1), (2, 1, 3), (2, 7, 5), (3, 37, 19), (1, 196, 33),
          (2, 257, 48), (1, 600, 7)]
ids = [f'B{b}-T{t}-C{c}' for b, t, c in SHAPES]


@pytest.mark.parametrize('shape', SHAPES, ids=ids)
def test_reference_matches_naive(shape):
    w, u, k, v = make_inputs(*shape, dtype=torch.float64)
    assert_rel_close(bi_wkv_reference(w, u, k, v), naive_bi_wkv(w, u, k, v),
                     1e-12)


def test_reference_blocks_give_the_same_result():
    """The reference evaluates (rows, T) blocks of at most max_elements:
    small blocks give the result of one block."""
    w, u, k, v = make_inputs(2, 50, 6, dtype=torch.float64)
    assert torch.equal(bi_wkv_reference(w, u, k, v, max_elements=2 * 50 * 6),
                       bi_wkv_reference(w, u, k, v))


def test_reference_gradients_match_finite_differences():
    inputs = make_inputs(1, 7, 3, dtype=torch.float64, requires_grad=True)
    # the max-normalisation is not differentiated (as in the kernels): the
    # 1e-6 in the denominator moves with it, O(1e-6) from finite differences
    assert torch.autograd.gradcheck(bi_wkv_reference, inputs, eps=1e-6,
                                    atol=1e-5, rtol=1e-5)
