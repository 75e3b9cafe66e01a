"""VRWKVAdapter: strides, presets, gradients, options, errors."""
import pytest
import torch

from mmvrwkv.models import VRWKV, VRWKVAdapter
from .adapter_checks import (check_four_maps_at_strides_4_to_32,
                             check_gradients_reach_every_parameter,
                             check_with_cp_matches, expected_adapter_params)

# A narrow adapter that runs in well under a second on a CPU.
SMALL = dict(arch=dict(embed_dims=64, num_layers=4), img_size=64,
             conv_inplane=16, deform_num_heads=2, deform_ratio=1.0,
             interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]])


def small(**kwargs):
    return VRWKVAdapter(**{**SMALL, **kwargs})


@pytest.mark.parametrize('arch,heads,ratio,img,total', [
    ('tiny', 6, 1.0, 224, 8.4), ('small', 6, 1.0, 224, 29.3),
    ('base', 12, 0.5, 224, 106.6), ('large', 16, 0.5, 192, 351.9)])
def test_presets_param_count(arch, heads, ratio, img, total):
    model = VRWKVAdapter(arch=arch, img_size=img)
    backbone = VRWKV(arch=arch, img_size=img, final_norm=False,
                     init_values=model.layers[0].gamma1[0].item())
    n_backbone = sum(p.numel() for p in backbone.parameters())
    n = sum(p.numel() for p in model.parameters())
    C = model.embed_dims
    assert n - n_backbone == expected_adapter_params(C, heads, ratio, 4)
    # the paper's table (backbone + adapter, in M)
    assert round(n / 1e6, 1) == total
    assert not hasattr(model, 'ln1')
    assert model.interactions[-1].extra_extractors is not None
    assert model.interactions[0].extra_extractors is None


@pytest.mark.parametrize('size', [(64, 64), (96, 160), (100, 75),
                                  (224, 200)], ids=lambda s: f'{s[0]}x{s[1]}')
def test_four_maps_at_strides_4_to_32(size):
    check_four_maps_at_strides_4_to_32(small(), size)


@pytest.mark.parametrize('mode', ['final', 'per_interaction', None])
def test_outputs_are_standard_nchw(mode):
    """RoI heads read the maps as contiguous NCHW: mmcv's RoIAlign ignores
    strides, so channels-last maps (what (B, N, C) tokens reshape into)
    silently gave Mask R-CNN garbage RoI features."""
    from mmcv.ops import roi_align
    model = small(vrwkv_feature=mode).train()
    outs = model(torch.randn(2, 3, 96, 128))
    rois = torch.tensor([[0., 8., 12., 60., 90.], [1., 30., 5., 120., 70.]])
    for out, stride in zip(outs, (4, 8, 16, 32)):
        assert out.is_contiguous()
        got = roi_align(out, rois, (7, 7), 1 / stride, 2, 'avg', True)
        nchw = out.detach().clone(memory_format=torch.contiguous_format)
        want = roi_align(nchw, rois, (7, 7), 1 / stride, 2, 'avg', True)
        torch.testing.assert_close(got, want)


def test_tiny_preset_forward():
    model = VRWKVAdapter(arch='tiny').eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 128, 192))
    assert [tuple(o.shape[2:]) for o in outs] == [(32, 48), (16, 24),
                                                  (8, 12), (4, 6)]


@pytest.mark.parametrize('mode', ['final', 'per_interaction', None])
def test_gradients_reach_every_parameter(mode):
    check_gradients_reach_every_parameter(
        small(vrwkv_feature=mode, init_values_inject=0.1, drop_path_rate=0.1))


def test_feature_modes_differ_with_same_weights():
    torch.manual_seed(0)
    det = small(vrwkv_feature='final').eval()
    seg = small(vrwkv_feature='per_interaction').eval()
    seg.load_state_dict(det.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = det(x), seg(x)
    # the last interaction's map is the same; the other levels differ
    assert torch.allclose(a[3], b[3], atol=1e-5)
    assert not torch.allclose(a[0], b[0], atol=1e-3)


def test_injector_starts_as_identity():
    """gamma = 0: the tokens entering the first layer are the plain
    backbone's, so the adapter starts from the pretrained model."""
    model = small().eval()
    inj = model.interactions[0].injector
    x = torch.randn(1, 16, 64)
    c = torch.randn(1, 4 * 16 + 16 + 4, 64)
    from mmvrwkv.models.backbones.adapter_modules import DeformInputs
    layout = DeformInputs(64, 64, x.device).injector
    assert torch.equal(inj(x, c, layout), x)


@pytest.mark.parametrize('norm', ['BN', 'SyncBN'])
def test_norm_cfg_single_process(norm):
    model = small(norm_cfg=dict(type=norm, requires_grad=True))
    assert type(model.norm1).__name__ == \
        {'BN': 'BatchNorm2d', 'SyncBN': 'SyncBatchNorm'}[norm]
    outs = model(torch.randn(2, 3, 64, 64))
    outs[0].mean().backward()


def test_with_cp_matches():
    torch.manual_seed(0)
    a = small()
    b = small(with_cp=True)
    b.load_state_dict(a.state_dict())
    check_with_cp_matches(a, b)


def test_layer_depth():
    model = small()
    assert model.get_layer_depth('backbone.pos_embed', 'backbone.') == (0, 6)
    assert model.get_layer_depth('backbone.layers.2.att.key.weight',
                                 'backbone.') == (3, 6)
    assert model.get_layer_depth('backbone.interactions.0.injector.gamma',
                                 'backbone.') == (5, 6)


def test_loads_classifier_weights():
    """An ImageNet VRWKV's weights load into the adapter's backbone part:
    only the final norm is unexpected."""
    cls = VRWKV(arch=SMALL['arch'], img_size=48)  # 3x3 grid -> resized
    model = small()
    result = model.load_state_dict(cls.state_dict(), strict=False)
    assert set(result.unexpected_keys) == {'ln1.weight', 'ln1.bias'}
    assert all(k.startswith(('level_embed', 'spm', 'interactions', 'up',
                             'norm')) for k in result.missing_keys)
    assert torch.equal(model.layers[1].att.key.weight,
                       cls.layers[1].att.key.weight)


@pytest.mark.parametrize('kwargs,message', [
    (dict(interaction_indexes=[[0, 1], [3, 3]]), 'covering layers 0..3'),
    (dict(interaction_indexes=[[0, 1, 2], [3, 3]]), 'pairs'),
    (dict(vrwkv_feature='mean'), 'vrwkv_feature'),
    (dict(interaction_indexes=[[0, 1], [2, 3]],
          vrwkv_feature='per_interaction'), 'needs 4 interaction blocks'),
    (dict(out_indices=(0, 1)), 'out_indices'),
    (dict(deform_num_heads=None), 'deform_num_heads'),
    (dict(arch='huge'), 'not one of'),
])
def test_bad_arguments(kwargs, message):
    cfg = {**SMALL, **kwargs}
    with pytest.raises((ValueError, TypeError), match=message):
        VRWKVAdapter(**cfg)


def test_too_small_input():
    with pytest.raises(ValueError, match='smaller than'):
        small()(torch.randn(1, 3, 16, 64))


def test_norm_gradients_with_a_batch_of_one():
    """Every output goes through a BN; the gradient of its bias is the sum
    of the upstream gradient. torch's CPU BN backward gets this wrong for
    the strides a transposed batch of one has, so the maps must be
    contiguous before the norms."""
    model = small(vrwkv_feature='per_interaction').train()
    outs = model(torch.randn(1, 3, 64, 96))
    weights = [torch.randn_like(o) for o in outs]
    sum((o * w).sum() for o, w in zip(outs, weights)).backward()
    for i, w in enumerate(weights):
        torch.testing.assert_close(
            getattr(model, f'norm{i + 1}').bias.grad, w.sum((0, 2, 3)))
