"""The entry point of multi-scale deformable sampling,
``mmvrwkv.ops.ms_deform_attn``: backends, input checks, and 'auto' off
CUDA (the reference, as mmcv's own module, without a warning)."""
import warnings

import pytest
import torch

from mmvrwkv.ops import (MS_DEFORM_ATTN_BACKENDS, ms_deform_attn,
                         ms_deform_attn_backends, ms_deform_attn_reference)
from ..helpers import MSDA_SHAPES, msda_inputs


def test_cpu_runs_the_reference_silently():
    value, loc, weights = msda_inputs()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        y = ms_deform_attn(value, MSDA_SHAPES, loc, weights)
    assert torch.equal(y, ms_deform_attn_reference(value, MSDA_SHAPES, loc,
                                                   weights))
    assert ms_deform_attn_backends('cpu') == ('reference', )


def test_compiled_off_cuda_names_the_cause():
    with pytest.raises(RuntimeError, match='CUDA only'):
        ms_deform_attn(*msda_inputs()[:1], MSDA_SHAPES, *msda_inputs()[1:],
                       backend='compiled')


def test_unknown_backend():
    with pytest.raises(ValueError, match='not one of: auto, compiled'):
        ms_deform_attn(*msda_inputs()[:1], MSDA_SHAPES, *msda_inputs()[1:],
                       backend='chunked')
    assert MS_DEFORM_ATTN_BACKENDS.argument == 'deform_attn_backend'


@pytest.mark.parametrize('make, match', [
    (lambda v, loc, w: (v[0], loc, w), r'value must have shape'),
    (lambda v, loc, w: (v, loc[..., :1], w), 'sampling_locations must'),
    (lambda v, loc, w: (v, loc, w[:, :2]), 'attention_weights must'),
    (lambda v, loc, w: (v[:, :30], loc, w), 'hold 31 pixels, value has 30'),
    (lambda v, loc, w: (v.long(), loc, w), 'floating-point'),
], ids=['value-rank', 'loc-shape', 'weights-shape', 'pixels', 'int'])
def test_bad_input_is_rejected(make, match):
    args = make(*msda_inputs())
    with pytest.raises((ValueError, TypeError), match=match):
        ms_deform_attn(args[0], MSDA_SHAPES, *args[1:])
