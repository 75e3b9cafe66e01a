"""The standard-operator multi-scale deformable sampling (``grid_sample``)
against an independent float64 oracle, and against mmcv's own PyTorch
function, which the adapters ran before."""
import importlib.util

import pytest
import torch

from mmvrwkv.ops import ms_deform_attn_reference
from ..helpers import (MSDA_SHAPES, assert_rel_close, msda_inputs,
                       naive_ms_deform_attn)

CASES = {
    'B2-Q5-H3-D4-P2': dict(),
    'B1-Q7-H1-D3-P4': dict(B=1, Q=7, heads=1, D=3, points=4),
    'one-level': dict(shapes=[(5, 7)]),
    'far-outside': dict(margin=1.0),
}


@pytest.mark.parametrize('case', list(CASES))
def test_matches_naive_float64(case):
    spec = dict(CASES[case])
    shapes = spec.get('shapes', MSDA_SHAPES)
    value, loc, weights = msda_inputs(dtype=torch.float64, **spec)
    got = ms_deform_attn_reference(value, shapes, loc, weights)
    assert got.dtype == torch.float64
    assert_rel_close(got, naive_ms_deform_attn(value, shapes, loc, weights),
                     1e-12)


def test_float32_and_low_precision_value():
    """float32 to float32 rounding; a bfloat16 value keeps float32
    locations (sampled in float32, returned in bfloat16)."""
    value, loc, weights = msda_inputs()
    want = naive_ms_deform_attn(value, MSDA_SHAPES, loc, weights)
    assert_rel_close(ms_deform_attn_reference(value, MSDA_SHAPES, loc,
                                              weights), want, 1e-6)
    got = ms_deform_attn_reference(value.bfloat16(), MSDA_SHAPES, loc,
                                   weights)
    assert got.dtype == torch.bfloat16
    assert_rel_close(got, want, 2e-2)


def test_gradients_match_finite_differences():
    value, loc, weights = (x.requires_grad_() for x in msda_inputs(
        B=1, Q=2, heads=2, D=2, dtype=torch.float64, margin=0.0))
    # locations away from pixel centres and edges, where bilinear
    # interpolation is smooth
    assert torch.autograd.gradcheck(
        lambda v, loc, w: ms_deform_attn_reference(v, MSDA_SHAPES, loc, w),
        (value, loc, weights))


@pytest.mark.skipif(importlib.util.find_spec('mmcv') is None,
                    reason='mmcv is not installed')
def test_equals_mmcvs_pytorch_function():
    from mmcv.ops.multi_scale_deform_attn import \
        multi_scale_deformable_attn_pytorch
    value, loc, weights = msda_inputs()
    want = multi_scale_deformable_attn_pytorch(
        value, torch.tensor(MSDA_SHAPES), loc, weights)
    assert_rel_close(ms_deform_attn_reference(value, MSDA_SHAPES, loc,
                                              weights), want, 1e-6)
