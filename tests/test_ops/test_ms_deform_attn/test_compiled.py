"""mmcv's multi-scale deformable attention CUDA kernels, as the operator
``torch.ops.mmvrwkv.ms_deform_attn``, against the float64 reference: the
output and the gradients of value, sampling locations and attention weights,
for the dtypes mmcv's kernels take. Needs a GPU and mmcv built with its CUDA
ops (tools/gpu_check.sh runs these where it has them)."""
import pytest
import torch

from mmvrwkv.ops import (ms_deform_attn, ms_deform_attn_backends,
                         ms_deform_attn_reference)
from ..helpers import MSDA_SHAPES, assert_rel_close, msda_inputs

HAS_KERNEL = torch.cuda.is_available() and \
    'compiled' in ms_deform_attn_backends('cuda')
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(
    not HAS_KERNEL, reason="needs a GPU and mmcv's CUDA ops")]
TOL = {torch.float32: 1e-5, torch.float64: 1e-12, torch.float16: 5e-3}


@pytest.mark.parametrize('dtype', list(TOL), ids=['fp32', 'fp64', 'fp16'])
@pytest.mark.parametrize('shape', [dict(), dict(B=1, Q=70, heads=6, D=32,
                                                points=4)],
                         ids=['small', 'adapter-like'])
def test_matches_reference(shape, dtype):
    inputs = msda_inputs(dtype=dtype, device='cuda', **shape)
    xs = [x.requires_grad_() for x in inputs]
    y = ms_deform_attn(xs[0], MSDA_SHAPES, xs[1], xs[2], backend='compiled')
    assert y.dtype == dtype
    ref_in = [x.detach().cpu().double().requires_grad_() for x in xs]
    want = ms_deform_attn_reference(ref_in[0], MSDA_SHAPES, *ref_in[1:])
    assert_rel_close(y, want, TOL[dtype], 'y')
    gy = torch.randn(y.shape, dtype=torch.float64)
    got = torch.autograd.grad(y, xs, gy.to('cuda', dtype))
    want_grads = torch.autograd.grad(want, ref_in, gy)
    for name, a, b in zip(('value', 'locations', 'weights'), got,
                          want_grads):
        assert a.dtype == dtype
        assert_rel_close(a, b, 10 * TOL[dtype], f'grad {name}')
