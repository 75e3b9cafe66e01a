"""VRWKV6Adapter: the VRWKV adapter's modules and contract on VRWKV6
(presets, strides at odd sizes, freezing, with_cp, gradients, official
VRWKV6 ImageNet checkpoints through init_cfg)."""
import io

import pytest
import torch
from mmengine.registry import MODELS

from mmvrwkv.models import VRWKV6, VRWKV6Adapter, VRWKVAdapter
from tests.test_apis import official_state_dicts as official
from .adapter_checks import (check_four_maps_at_strides_4_to_32,
                             check_gradients_reach_every_parameter,
                             check_with_cp_matches, expected_adapter_params)

# two heads of 64 channels, one layer per interaction block
SMALL = dict(arch=dict(embed_dims=128, num_layers=4), img_size=64,
             conv_inplane=16, deform_num_heads=2, deform_ratio=1.0,
             interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]])


def small(**kwargs):
    return VRWKV6Adapter(**{**SMALL, **kwargs})


def num_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize('arch', ['tiny', 'small', 'base'])
def test_presets_are_the_vrwkv_adapter_settings_on_vrwkv6(arch):
    with torch.device('meta'):
        model = VRWKV6Adapter(arch=arch)
        reference = VRWKVAdapter(arch=arch)
        backbone = VRWKV6(arch=arch, final_norm=False,
                          init_values=model.arch_settings['init_values'])
    adapter_keys = ('deform_num_heads', 'deform_ratio',
                    'interaction_indexes', 'init_values')
    for key in adapter_keys:
        assert model.arch_settings[key] == reference.arch_settings[key]
    C = model.embed_dims
    heads = model.arch_settings['deform_num_heads']
    ratio = model.arch_settings['deform_ratio']
    assert num_params(model) - num_params(backbone) == \
        expected_adapter_params(C, heads, ratio, 4)
    # the backbone presets stay VRWKV6's (post_norm, heads of 64)
    assert model.arch_settings['post_norm'] == \
        VRWKV6.arch_zoo[arch]['post_norm']
    assert model.num_heads == C // 64
    assert not hasattr(model, 'ln1')


@pytest.mark.parametrize('size', [(64, 64), (100, 75), (70, 130)],
                         ids=lambda s: f'{s[0]}x{s[1]}')
def test_four_maps_at_strides_4_to_32(size):
    check_four_maps_at_strides_4_to_32(small(), size)


@pytest.mark.parametrize('mode', ['final', 'per_interaction'])
def test_gradients_reach_every_parameter(mode):
    check_gradients_reach_every_parameter(
        small(vrwkv_feature=mode, init_values_inject=0.1, drop_path_rate=0.1))


def test_with_cp_matches():
    torch.manual_seed(0)
    a = small()
    b = small(with_cp=True)
    b.load_state_dict(a.state_dict())
    assert all(layer.with_cp for layer in b.layers)
    assert b.spm.with_cp and b.interactions[0].injector.with_cp
    check_with_cp_matches(a, b)


def test_frozen_stages_freeze_the_backbone_part():
    model = small(frozen_stages=2).train()
    assert not model.pos_embed.requires_grad
    assert not any(p.requires_grad for p in model.layers[1].parameters())
    assert all(p.requires_grad for p in model.layers[2].parameters())
    assert all(p.requires_grad for p in model.spm.parameters())


@pytest.mark.parametrize('kwargs, match', [
    (dict(out_indices=(0, 1)), 'VRWKV6Adapter always returns four maps'),
    (dict(final_norm=True), 'final_norm'),
    (dict(deform_num_heads=None), 'needs deform_num_heads'),
    (dict(interaction_indexes=[[0, 1], [3, 3]]), 'covering layers 0..3'),
    (dict(arch='large'), "'large' is not one of: base, small, tiny"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        small(**kwargs)


def test_state_dict_round_trip():
    model = small().eval()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    other = small().eval()
    other.load_state_dict(torch.load(buf, weights_only=True))
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for u, v in zip(model(x), other(x)):
            torch.testing.assert_close(u, v)


def test_starts_from_an_official_vrwkv6_classifier(tmp_path):
    """An official-layout VRWKV6 ImageNet checkpoint (mmcls 0.x, 12x12
    grid) loads into the backbone part through init_cfg Pretrained with the
    ``backbone.`` prefix; the adapter's own modules keep their init."""
    shapes = official.Shapes()
    official.vrwkv6(shapes, 'backbone.', 128, 4, layer_scale=True, img=192)
    shapes.linear('head.fc', 128, 10)
    state = shapes.tensors(seed=5)
    path = str(tmp_path / 'vrwkv6_in1k.pth')
    torch.save(official.mmcv1_checkpoint(state), path)
    model = MODELS.build(dict(
        type='VRWKV6Adapter', **SMALL, init_values=1e-5,
        init_cfg=dict(type='Pretrained', checkpoint=path,
                      prefix='backbone.')))
    model.init_weights()
    ours = model.state_dict()
    for key, value in state.items():
        name = key[len('backbone.'):]
        if key.startswith('backbone.') and name in ours \
                and name != 'pos_embed':
            torch.testing.assert_close(ours[name], value, msg=name)
    assert ours['pos_embed'].shape == (1, 16, 128)  # resized to 4x4


def test_tiny_preset_loads_the_official_vrwkv6_t_names():
    """vrwkv6_t_in1k_224.pth's backbone keys all load; only the adapter's
    modules and the layer scale (the adapter's tiny preset adds gamma = 1,
    the classifier has none) are missing, only ln1 is unexpected."""
    state = official.official_vrwkv6_classifier('tiny').tensors(
        device='meta')
    backbone = {k[len('backbone.'):]: v for k, v in state.items()
                if k.startswith('backbone.')}
    with torch.device('meta'):
        model = VRWKV6Adapter(arch='tiny')
    result = model.load_state_dict(backbone, strict=False, assign=True)
    assert set(result.unexpected_keys) == {'ln1.weight', 'ln1.bias'}
    assert all(k.startswith(('level_embed', 'spm', 'interactions', 'up',
                             'norm')) or k.endswith(('gamma1', 'gamma2'))
               for k in result.missing_keys)
    assert model.arch_settings['init_values'] == 1.0


def test_registries_find_it():
    import importlib
    for scope in ('mmdet', 'mmseg'):
        registry = importlib.import_module(f'{scope}.registry').MODELS
        assert isinstance(registry.build(dict(type='VRWKV6Adapter', **SMALL)),
                          VRWKV6Adapter)
