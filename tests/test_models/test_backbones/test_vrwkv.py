"""The VRWKV backbone: presets, parameter counts, official names (the
shared contract is in test_backbone_contract.py)."""
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
    """Parameter count from the architecture, independent of the module
    code."""
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
    (dict(out_indices=12), r'valid: -12\.\.11'),
    (dict(channel_gamma=0.5), 'channel_gamma'),
])
def test_bad_config_is_rejected(kwargs, match):
    """VRWKV's own checks; the shared ones are in
    test_backbone_contract.py."""
    with pytest.raises((ValueError, TypeError), match=match):
        VRWKV(**kwargs)


def test_state_dict_round_trip_and_official_names():
    model = VRWKV(arch='tiny').eval()
    keys = set(model.state_dict())
    for name in ('pos_embed', 'patch_embed.projection.weight',
                 'layers.0.ln0.weight', 'layers.3.att.spatial_decay',
                 'layers.3.att.spatial_first', 'layers.3.att.spatial_mix_v',
                 'layers.3.att.receptance.weight',
                 'layers.3.att.output.weight',
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
