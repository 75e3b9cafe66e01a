"""The backbone contract that VRWKV and VRWKV6 share (VisionRWKVBase):
out_indices and out_type, any input size, with_cp, frozen_stages, layer
depth, checkpoints, overrides, registries, and bad input or config rejected
with a message naming the problem and the fix (docs/reliability.md)."""
import copy
import io

import pytest
import torch
from mmengine.runner import load_checkpoint

from mmvrwkv.models import VRWKV, VRWKV6, VRWKVAdapter

BACKBONES = [VRWKV, VRWKV6]
C = 64  # a multiple of VRWKV6's head size


def small_cfg(**kwargs):
    return {**dict(arch=dict(embed_dims=C, num_layers=4), img_size=64),
            **kwargs}


ADAPTER = dict(arch=dict(embed_dims=C, num_layers=2), img_size=64,
               conv_inplane=8, deform_num_heads=2, deform_ratio=1.0,
               interaction_indexes=[[0, 0], [1, 1]])

backbones = pytest.mark.parametrize('cls', BACKBONES,
                                    ids=lambda c: c.__name__)


@backbones
def test_out_indices_and_types(cls):
    model = cls(**small_cfg(out_indices=(0, -2, 3)))
    assert model.out_indices == (0, 2, 3)
    outs = model(torch.randn(2, 3, 64, 96))
    assert [o.shape for o in outs] == [(2, C, 4, 6)] * 3
    raw = cls(**small_cfg(out_type='raw'))(torch.randn(2, 3, 64, 64))
    assert raw[0].shape == (2, 16, C)
    pooled = cls(**small_cfg(out_type='avg_featmap')).eval()(
        torch.randn(2, 3, 64, 64))[0]
    assert pooled.shape == (2, C)


@backbones
@pytest.mark.parametrize('size, grid', [((70, 49), (5, 4)),
                                        ((256, 309), (16, 20)),
                                        ((16, 16), (1, 1)),
                                        ((17, 100), (2, 7))],
                         ids=lambda s: 'x'.join(map(str, s)))
def test_odd_and_non_square_inputs_are_padded(cls, size, grid):
    model = cls(**small_cfg()).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))[0]
    assert out.shape == (1, C, *grid)
    assert torch.isfinite(out).all()


@backbones
def test_with_cp_gives_same_gradients(cls):
    torch.manual_seed(1)
    a = cls(**small_cfg())
    b = cls(**small_cfg(with_cp=True))
    b.load_state_dict(a.state_dict())
    assert all(layer.with_cp for layer in b.layers)
    x = torch.randn(2, 3, 64, 64)
    for model in (a, b):
        model.train()
        model(x)[0].square().mean().backward()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert pa.grad is not None, name
        torch.testing.assert_close(pa.grad, pb.grad, msg=name)


@backbones
def test_frozen_stages(cls):
    model = cls(**small_cfg(frozen_stages=2))
    model.train()
    assert not model.pos_embed.requires_grad
    assert not model.patch_embed.training
    assert not any(p.requires_grad for p in model.layers[1].parameters())
    assert all(p.requires_grad for p in model.layers[2].parameters())
    everything = cls(**small_cfg(frozen_stages=4))
    assert not any(p.requires_grad for p in everything.parameters())


@backbones
def test_layer_depth(cls):
    model = cls(**small_cfg())
    assert model.get_layer_depth('backbone.pos_embed', 'backbone.') == (0, 6)
    assert model.get_layer_depth('backbone.patch_embed.projection.weight',
                                 'backbone.') == (0, 6)
    assert model.get_layer_depth('backbone.layers.2.att.key.weight',
                                 'backbone.') == (3, 6)
    assert model.get_layer_depth('backbone.ln1.weight', 'backbone.') == (5, 6)
    assert model.get_layer_depth('head.fc.weight', 'backbone.') == (5, 6)


@backbones
def test_state_dict_round_trip(cls):
    model = cls(**small_cfg()).eval()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    other = cls(**small_cfg()).eval()
    other.load_state_dict(torch.load(buf, weights_only=True))
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], other(x)[0])


@backbones
def test_pos_embed_resized_when_loading(cls):
    """An L-style 12x12 (192px) checkpoint loads into a 224px model."""
    src = cls(**small_cfg(img_size=48))  # 3x3
    dst = cls(**small_cfg(img_size=64))  # 4x4
    state = copy.deepcopy(src.state_dict())
    dst.load_state_dict(state)
    assert dst.pos_embed.shape == (1, 16, C)
    presets = ', '.join(f'{k} {v["embed_dims"]}'
                        for k, v in cls.arch_zoo.items() if len(k) > 1)
    with pytest.raises(ValueError,
                       match=rf'another arch preset \({presets}\)'):
        dst.load_state_dict(dict(state, pos_embed=torch.zeros(1, 9, 2 * C)))


def test_checkpoint_of_another_preset(tmp_path):
    """The mm way, init_cfg=Pretrained, reaches the same check."""
    other = VRWKV(arch=dict(embed_dims=2 * C, num_layers=2), img_size=64)
    path = str(tmp_path / 'other.pth')
    torch.save({'state_dict': {'backbone.' + k: v for k, v in
                               other.state_dict().items()}}, path)
    with pytest.raises(ValueError,
                       match=f'embed_dims={2 * C}, this model {C}; it is '
                       'for another arch preset'):
        load_checkpoint(VRWKV(**small_cfg()), path,
                        revise_keys=[(r'^backbone\.', '')])
    model = VRWKVAdapter(**ADAPTER, init_cfg=dict(
        type='Pretrained', checkpoint=path, prefix='backbone.'))
    with pytest.raises(ValueError, match='another arch preset'):
        model.init_weights()


@backbones
def test_override_arch_options(cls):
    model = cls(arch='small', init_values=0.5, post_norm=False)
    assert model.layers[0].gamma1[0].item() == 0.5
    assert not model.layers[0].post_norm
    # None keeps the preset's value
    assert cls(arch='small', init_values=None).layers[0].post_norm
    assert cls(arch='small').layers[0].gamma1[0].item() == pytest.approx(
        cls.arch_zoo['small']['init_values'])


@backbones
def test_init_values_zero_turns_layer_scale_off(cls):
    with_scale = cls(**small_cfg(init_values=1e-5))
    without = cls(arch='small', init_values=0)
    assert without.arch_settings['init_values'] == 0
    assert not any(hasattr(block, 'gamma1') for block in without.layers)
    assert hasattr(with_scale.layers[0], 'gamma1')
    plain = cls(**small_cfg())  # the dict arch default: no layer scale
    scaled_off = cls(**small_cfg(init_values=0))
    n = sum(p.numel() for p in plain.parameters())
    assert sum(p.numel() for p in scaled_off.parameters()) == n
    assert sum(p.numel() for p in with_scale.parameters()) == \
        n + 2 * C * 4


@backbones
@pytest.mark.parametrize('scope', ['mmpretrain', 'mmdet', 'mmseg'])
def test_registries_find_the_backbone(cls, scope):
    import importlib
    registry = importlib.import_module(f'{scope}.registry').MODELS
    model = registry.build(dict(type=cls.__name__, **small_cfg()))
    assert isinstance(model, cls)


@backbones
@pytest.mark.parametrize('kwargs, match', [
    (dict(arch='gigantic'), "arch 'gigantic' is not one of: base, "),
    (dict(arch=dict(embed_dims=C)), r"needs \['num_layers'\]"),
    (dict(arch=dict(embed_dims=C, num_layers=2, heads=2)),
     'unknown arch keys'),
    (dict(out_indices=4), r'out of range .*valid: -4\.\.3'),
    (dict(out_indices=-5), 'out of range'),
    (dict(out_type='cls_token'), 'out_type'),
    (dict(shift_mode='eval("1")'), 'not one of: q_shift'),
], ids=['arch', 'arch-missing', 'arch-unknown', 'out-index', 'out-index-neg',
        'out-type', 'shift-mode'])
def test_bad_config_is_rejected(cls, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        cls(**small_cfg(**kwargs))


MODELS = {
    'VRWKV': lambda: VRWKV(**small_cfg()),
    'VRWKV6': lambda: VRWKV6(**small_cfg()),
    'VRWKVAdapter': lambda: VRWKVAdapter(**ADAPTER),
}
models = pytest.mark.parametrize('name', list(MODELS))


@models
@pytest.mark.parametrize('x, match', [
    (torch.randn(1, 3, 8, 40), r'input 8x40 is smaller than .* at least'),
    (torch.randn(1, 1, 64, 64),
     r'3-channel images, got 1 .*with in_channels=1'),
    (torch.randn(1, 4, 64, 64), r'got 4 .*with in_channels=4'),
    (torch.randn(3, 64, 64), r'\(B, C, H, W\)'),
], ids=['smaller-than-patch', 'grayscale', 'rgba', 'no-batch'])
def test_bad_images(name, x, match):
    with pytest.raises(ValueError, match=match):
        MODELS[name]()(x)


@models
def test_nan_images(name):
    x = torch.randn(1, 3, 64, 64)
    x[0, 1, 5, 7] = float('nan')
    x[0, 2, 0, 0] = float('inf')
    # checked without a host sync (torch._assert_async), which raises
    # RuntimeError on the CPU
    with pytest.raises(RuntimeError, match='contain NaN/Inf values'):
        MODELS[name]()(x)
