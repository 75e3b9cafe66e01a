"""VRWKV6 layers against transcriptions of the official code
(OpenGVLab/Vision-RWKV 0e0e38a, classification/mmcls_custom/models/
backbones/vrwkv6.py)."""
import pytest
import torch
import torch.nn.functional as F

from mmvrwkv.models.layers import SpatialMixV6, VRWKV6Block, q_shift_multihead
from mmvrwkv.models.layers.shift import get_shift_func
from mmvrwkv.ops import bi_wkv6_naive


def official_q_shift_multihead(x, s, head_dim, patch_resolution):
    """The official q_shift_multihead: (B, heads, head_dim, H, W) layout,
    zeros, each quarter of each head from one direction."""
    B, N, C = x.shape
    x = x.transpose(1, 2).reshape(B, -1, head_dim, *patch_resolution)
    H, W = patch_resolution
    q = head_dim // 4
    out = torch.zeros_like(x)
    out[:, :, 0:q, :, s:W] = x[:, :, 0:q, :, 0:W - s]
    out[:, :, q:2 * q, :, 0:W - s] = x[:, :, q:2 * q, :, s:W]
    out[:, :, 2 * q:3 * q, s:H, :] = x[:, :, 2 * q:3 * q, 0:H - s, :]
    out[:, :, 3 * q:4 * q, 0:H - s, :] = x[:, :, 3 * q:4 * q, s:H, :]
    return out.reshape(B, C, N).transpose(1, 2)


@pytest.mark.parametrize('C, H, W, s', [(64, 3, 5, 1), (192, 4, 4, 1),
                                        (128, 7, 6, 2), (64, 2, 9, 1)])
def test_q_shift_multihead_matches_official(C, H, W, s):
    x = torch.randn(2, H * W, C, requires_grad=True)
    got = q_shift_multihead(x, s, 1 / 4, (H, W))
    assert torch.equal(got, official_q_shift_multihead(x, s, 64, (H, W)))
    got.sum().backward()
    assert x.grad is not None
    assert get_shift_func('q_shift_multihead') is q_shift_multihead


def test_q_shift_multihead_edges():
    x = torch.randn(1, 6, 128)
    assert torch.all(q_shift_multihead(x, 5, 1 / 4, (2, 3)) == 0)
    with pytest.raises(ValueError, match='not a whole number of heads'):
        q_shift_multihead(torch.randn(1, 6, 96), 1, 1 / 4, (2, 3))


def official_v6_init(C, n_head, layer_id, n_layer):
    """VRWKV_SpatialMix_V6._init_weights('fancy'), the loops as written."""
    r01 = layer_id / (n_layer - 1)
    r10 = 1.0 - layer_id / n_layer
    ddd = torch.ones(1, 1, C)
    for i in range(C):
        ddd[0, 0, i] = i / C
    decay = torch.ones(C)
    faaaa = torch.zeros(C)
    for n in range(C):
        decay[n] = -6 + 5 * (n / (C - 1))**(0.7 + 1.3 * r01)
        faaaa[n] = r01 * (1 - (n / (C - 1))) + ((n + 1) % 3 - 1) * 0.1
    return dict(
        time_maa_x=1.0 - torch.pow(ddd, r10),
        time_maa_w=1.0 - torch.pow(ddd, r10),
        time_maa_k=1.0 - torch.pow(ddd, r10),
        time_maa_v=1.0 - (torch.pow(ddd, r10) + 0.3 * r01),
        time_maa_r=1.0 - torch.pow(ddd, 0.5 * r10),
        time_maa_g=1.0 - torch.pow(ddd, 0.5 * r10),
        time_decay=decay.reshape(1, 1, C),
        time_faaaa=faaaa.reshape(n_head, C // n_head))


@pytest.mark.parametrize('layer_id', [0, 5, 11])
def test_fancy_init_matches_official(layer_id):
    att = SpatialMixV6(128, 12, layer_id)
    for name, want in official_v6_init(128, 2, layer_id, 12).items():
        torch.testing.assert_close(getattr(att, name).data, want,
                                   msg=name)
    for name, shape in (('time_maa_w1', (128, 160)),
                        ('time_maa_w2', (5, 32, 128)),
                        ('time_decay_w1', (128, 64)),
                        ('time_decay_w2', (64, 128))):
        p = getattr(att, name)
        assert p.shape == shape, name
        assert p.abs().max() <= 1e-4 and p.abs().max() > 0, name
    assert att.ln_x.num_groups == 2 and att.ln_x.eps == 1e-5


def official_spatial_mix_v6(att, x, patch_resolution):
    """jit_func, RUN_CUDA_RWKV6 and jit_func_2 of VRWKV_SpatialMix_V6,
    transcribed (the kernel replaced by the loop reference)."""
    B, T, C = x.size()
    xx = official_q_shift_multihead(x, 1, 64, patch_resolution) - x
    xxx = x + xx * att.time_maa_x
    xxx = torch.tanh(xxx @ att.time_maa_w1).view(B * T, 5, -1).transpose(
        0, 1)
    xxx = torch.bmm(xxx, att.time_maa_w2).view(5, B, T, -1)
    mw, mk, mv, mr, mg = xxx.unbind(dim=0)
    xw = x + xx * (att.time_maa_w + mw)
    xk = x + xx * (att.time_maa_k + mk)
    xv = x + xx * (att.time_maa_v + mv)
    xr = x + xx * (att.time_maa_r + mr)
    xg = x + xx * (att.time_maa_g + mg)
    r = att.receptance(xr)
    k = att.key(xk)
    v = att.value(xv)
    g = F.silu(att.gate(xg))
    ww = torch.tanh(xw @ att.time_decay_w1) @ att.time_decay_w2
    w = att.time_decay + ww
    y = bi_wkv6_naive(r, k, v, w, att.time_faaaa)
    if att.key_norm is not None:
        y = att.key_norm(y)
    y = att.ln_x(y.view(B * T, C)).view(B, T, C)
    return att.output(y * g)


@pytest.mark.parametrize('key_norm', [False, True])
def test_spatial_mix_matches_official_formula(key_norm):
    att = SpatialMixV6(128, 4, 1, key_norm=key_norm).double()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # make the low-rank paths matter
        for name in ('time_maa_w1', 'time_maa_w2', 'time_decay_w1',
                     'time_decay_w2'):
            p = getattr(att, name)
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    x = torch.randn(2, 12, 128, dtype=torch.float64)
    torch.testing.assert_close(att(x, (3, 4)),
                               official_spatial_mix_v6(att, x, (3, 4)))


def test_block_uses_per_head_shift_in_both_mixes():
    block = VRWKV6Block(128, 4, 0, init_values=1e-5, post_norm=True)
    assert block.att.shift_func is q_shift_multihead
    assert block.ffn.shift_func is q_shift_multihead
    assert block.ffn.channel_gamma == 1 / 4
    assert hasattr(block, 'ln0') and torch.all(block.gamma2 == 1e-5)
    names = {n for n, _ in block.named_parameters()}
    assert {'att.time_faaaa', 'att.gate.weight', 'att.ln_x.weight',
            'ffn.spatial_mix_k', 'ffn.key.weight'} <= names


def test_spatial_mix_errors():
    with pytest.raises(ValueError, match='multiple of the head size 64'):
        SpatialMixV6(96, 2, 0)
    with pytest.raises(ValueError, match='shift_pixel must be >= 1'):
        SpatialMixV6(64, 2, 0, shift_pixel=0)
    with pytest.raises(ValueError, match="shift_mode 'x' is not one of"):
        SpatialMixV6(64, 2, 0, shift_mode='x')
