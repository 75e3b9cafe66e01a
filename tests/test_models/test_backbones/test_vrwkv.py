"""The VRWKV backbone: presets, options, registries, checkpoints."""
import copy
import io

import pytest
import torch

from mmvrwkv.models import VRWKV

PRESETS = {  # embed_dims, depth, post_norm, key_norm, init_values
    'tiny': (192, 12, False, False, None),
    'small': (384, 12, True, False, 1.0),
    'base': (768, 12, True, False, 1e-5),
    'large': (1024, 24, True, True, 1e-5),
}


def expected_params(C, depth, key_norm, layer_scale, img=224, patch=16):
    """Parameter count from the architecture, independent of the module code."""
    hidden = 4 * C
    att = 2 * C + 3 * C + 4 * C * C + (2 * C if key_norm else 0)
    ffn = 2 * C + 2 * C * hidden + C * C + (2 * hidden if key_norm else 0)
    layer = att + ffn + 4 * C + (2 * C if layer_scale else 0)
    tokens = (img // patch)**2
    return (depth * layer + 2 * C  # + ln0 of layer 0
            + 3 * patch * patch * C + C + tokens * C + 2 * C)  # embeds, ln1


@pytest.mark.parametrize('arch', list(PRESETS))
def test_preset_structure_and_param_count(arch):
    C, depth, post_norm, key_norm, init_values = PRESETS[arch]
    model = VRWKV(arch=arch)
    assert model.embed_dims == C and len(model.layers) == depth
    block = model.layers[-1]
    assert block.post_norm == post_norm
    assert (block.att.key_norm is not None) == key_norm
    assert (block.ffn.key_norm is not None) == key_norm
    if init_values is None:
        assert not hasattr(block, 'gamma1')
    else:
        assert torch.all(block.gamma1 == init_values)
    n = sum(p.numel() for p in model.parameters())
    assert n == expected_params(C, depth, key_norm, init_values is not None)


@pytest.mark.parametrize('arch', list(PRESETS))
def test_forward_square_and_non_square(arch):
    model = VRWKV(arch=arch, out_indices=(-1, ), drop_path_rate=0.1).eval()
    C = PRESETS[arch][0]
    with torch.no_grad():
        (out, ) = model(torch.randn(1, 3, 224, 224))
        assert out.shape == (1, C, 14, 14)
        (out, ) = model(torch.randn(1, 3, 320, 192))
        assert out.shape == (1, C, 20, 12)
    assert torch.isfinite(out).all()


def test_aliases_and_custom_arch():
    assert VRWKV(arch='T').embed_dims == VRWKV(arch='tiny').embed_dims
    model = VRWKV(arch=dict(embed_dims=64, num_layers=3, key_norm=True),
                  img_size=64)
    assert model.layers[0].att.key_norm is not None
    out = model(torch.randn(2, 3, 64, 64))
    assert out[0].shape == (2, 64, 4, 4)


@pytest.mark.parametrize('kwargs, match', [
    (dict(arch='gigantic'), "arch 'gigantic' is not one of: base, large, "
     'small, tiny'),
    (dict(arch=dict(embed_dims=8)), r"needs \['num_layers'\]"),
    (dict(arch=dict(embed_dims=8, num_layers=2, heads=2)), 'unknown arch'),
    (dict(out_indices=12), 'out of range'),
    (dict(out_indices=-13), 'out of range'),
    (dict(out_type='cls_token'), 'out_type'),
    (dict(channel_gamma=0.5), 'channel_gamma'),
    (dict(shift_mode='eval("1")'), 'not one of: q_shift'),
])
def test_bad_config_is_rejected(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        VRWKV(**kwargs)


def tiny_cfg(**kwargs):
    cfg = dict(arch=dict(embed_dims=32, num_layers=4), img_size=64)
    cfg.update(kwargs)
    return cfg


def test_out_indices_and_types():
    model = VRWKV(**tiny_cfg(out_indices=(0, -2, 3)))
    assert model.out_indices == (0, 2, 3)
    outs = model(torch.randn(2, 3, 64, 96))
    assert [o.shape for o in outs] == [(2, 32, 4, 6)] * 3
    raw = VRWKV(**tiny_cfg(out_type='raw'))(torch.randn(2, 3, 64, 64))
    assert raw[0].shape == (2, 16, 32)
    model = VRWKV(**tiny_cfg(out_type='avg_featmap')).eval()
    pooled = model(torch.randn(2, 3, 64, 64))[0]
    assert pooled.shape == (2, 32)


def test_odd_input_size_is_padded():
    out = VRWKV(**tiny_cfg())(torch.randn(1, 3, 70, 49))
    assert out[0].shape == (1, 32, 5, 4)


def test_override_arch_options():
    model = VRWKV(arch='small', init_values=0.5, post_norm=False)
    assert model.layers[0].gamma1[0].item() == 0.5
    assert not model.layers[0].post_norm


def test_with_cp_gives_same_gradients():
    torch.manual_seed(1)
    a = VRWKV(**tiny_cfg(drop_path_rate=0.0))
    b = VRWKV(**tiny_cfg(with_cp=True))
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 64, 64)
    for model in (a, b):
        model.train()
        model(x)[0].square().mean().backward()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert pa.grad is not None, name
        torch.testing.assert_close(pa.grad, pb.grad, msg=name)


def test_frozen_stages():
    model = VRWKV(**tiny_cfg(frozen_stages=2))
    model.train()
    assert not model.pos_embed.requires_grad
    assert not any(p.requires_grad for p in model.layers[1].parameters())
    assert all(p.requires_grad for p in model.layers[2].parameters())


def test_layer_depth():
    model = VRWKV(**tiny_cfg())
    assert model.get_layer_depth('backbone.pos_embed', 'backbone.') == (0, 6)
    assert model.get_layer_depth('backbone.patch_embed.projection.weight',
                                 'backbone.') == (0, 6)
    assert model.get_layer_depth('backbone.layers.2.att.key.weight',
                                 'backbone.') == (3, 6)
    assert model.get_layer_depth('backbone.ln1.weight', 'backbone.') == (5, 6)


def test_state_dict_round_trip_and_official_names():
    model = VRWKV(arch='tiny').eval()
    keys = set(model.state_dict())
    for name in ('pos_embed', 'patch_embed.projection.weight',
                 'layers.0.ln0.weight', 'layers.3.att.spatial_decay',
                 'layers.3.att.spatial_first', 'layers.3.att.spatial_mix_v',
                 'layers.3.att.receptance.weight', 'layers.3.att.output.weight',
                 'layers.3.ffn.spatial_mix_r', 'layers.3.ffn.value.weight',
                 'ln1.weight'):
        assert name in keys, name
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    other = VRWKV(arch='tiny').eval()
    other.load_state_dict(torch.load(buf, weights_only=True))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], other(x)[0])


def test_pos_embed_resized_when_loading():
    """An L-style 12x12 (192px) checkpoint loads into a 224px model."""
    src = VRWKV(**tiny_cfg(img_size=48))  # 3x3
    dst = VRWKV(**tiny_cfg(img_size=64))  # 4x4
    state = copy.deepcopy(src.state_dict())
    dst.load_state_dict(state)
    assert dst.pos_embed.shape == (1, 16, 32)
    with pytest.raises(ValueError, match='another arch preset'):
        bad = dict(state, pos_embed=torch.zeros(1, 10, 32))
        dst.load_state_dict(bad)


@pytest.mark.parametrize('scope', ['mmpretrain', 'mmdet', 'mmseg'])
def test_registries_find_vrwkv(scope):
    import importlib
    registry = importlib.import_module(f'{scope}.registry').MODELS
    model = registry.build(dict(type='VRWKV', **tiny_cfg()))
    assert isinstance(model, VRWKV)
