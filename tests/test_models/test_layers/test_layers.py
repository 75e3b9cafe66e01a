"""Layers against transcriptions of the official formulas."""
import math

import pytest
import torch

from mmvrwkv.models.layers import ChannelMix, SpatialMix, q_shift
from mmvrwkv.models.layers.shift import get_shift_func


def official_q_shift(x, shift_pixel, gamma, patch_resolution):
    """The official implementation: zero tensor, (B, C, H, W) layout."""
    B, N, C = x.shape
    x = x.transpose(1, 2).reshape(B, C, *patch_resolution)
    _, _, H, W = x.shape
    s = shift_pixel
    if s >= H or s >= W:  # the official slicing breaks here; all zeros
        x = torch.nn.functional.pad(x, (s, s, s, s))
        out = official_q_shift(
            x.flatten(2).transpose(1, 2), s, gamma, (H + 2 * s, W + 2 * s))
        out = out.transpose(1, 2).reshape(B, C, H + 2 * s, W + 2 * s)
        return out[:, :, s:s + H, s:s + W].flatten(2).transpose(1, 2)
    out = torch.zeros_like(x)
    g = [int(C * gamma * i) for i in range(5)]
    out[:, g[0]:g[1], :, s:W] = x[:, g[0]:g[1], :, 0:W - s]
    out[:, g[1]:g[2], :, 0:W - s] = x[:, g[1]:g[2], :, s:W]
    out[:, g[2]:g[3], s:H, :] = x[:, g[2]:g[3], 0:H - s, :]
    out[:, g[3]:g[4], 0:H - s, :] = x[:, g[3]:g[4], s:H, :]
    out[:, g[4]:, ...] = x[:, g[4]:, ...]
    return out.flatten(2).transpose(1, 2)


@pytest.mark.parametrize('C, H, W, s, gamma', [
    (8, 3, 5, 1, 1 / 4), (19, 4, 4, 1, 1 / 4), (190, 7, 6, 2, 1 / 4),
    (12, 2, 9, 1, 1 / 8), (16, 2, 2, 3, 1 / 4)])
def test_q_shift_matches_official(C, H, W, s, gamma):
    x = torch.randn(2, H * W, C, requires_grad=True)
    got = q_shift(x, s, gamma, (H, W))
    assert torch.equal(got, official_q_shift(x, s, gamma, (H, W)))
    got.sum().backward()  # differentiable
    assert x.grad is not None


def test_unknown_shift_mode():
    with pytest.raises(ValueError, match="'x_shift' is not one of: q_shift"):
        get_shift_func('x_shift')


def official_fancy(C, layer_id, n_layer):
    r01 = layer_id / (n_layer - 1)
    r10 = 1.0 - layer_id / n_layer
    decay = torch.tensor(
        [-5 + 8 * (h / (C - 1))**(0.7 + 1.3 * r01) for h in range(C)])
    zigzag = torch.tensor([(i + 1) % 3 - 1 for i in range(C)]) * 0.5
    first = torch.ones(C) * math.log(0.3) + zigzag
    x = torch.tensor([i / C for i in range(C)]).view(1, 1, C)
    return decay, first, x**r10, x**r10 + 0.3 * r01, x**(0.5 * r10)


@pytest.mark.parametrize('layer_id', [0, 5, 11])
def test_fancy_init_matches_official(layer_id):
    att = SpatialMix(48, 12, layer_id)
    decay, first, mk, mv, mr = official_fancy(48, layer_id, 12)
    torch.testing.assert_close(att.spatial_decay.data, decay)
    torch.testing.assert_close(att.spatial_first.data, first)
    torch.testing.assert_close(att.spatial_mix_k.data, mk)
    torch.testing.assert_close(att.spatial_mix_v.data, mv)
    torch.testing.assert_close(att.spatial_mix_r.data, mr)
    ffn = ChannelMix(48, 12, layer_id)
    torch.testing.assert_close(ffn.spatial_mix_k.data, mk)
    torch.testing.assert_close(ffn.spatial_mix_r.data, mk)


def test_init_modes_and_no_shift():
    att = SpatialMix(8, 4, 1, init_mode='global')
    assert torch.all(att.spatial_decay == 0)
    assert torch.all(att.spatial_mix_k == 0.5)
    ffn = ChannelMix(8, 4, 1, init_mode='local')
    assert torch.all(ffn.spatial_mix_r == 1)
    with pytest.raises(ValueError, match="init_mode 'wild'"):
        SpatialMix(8, 4, 1, init_mode='wild')
    no_shift = SpatialMix(8, 4, 1, shift_pixel=0)
    assert not hasattr(no_shift, 'spatial_mix_k')
    y = no_shift(torch.randn(1, 6, 8), (2, 3))
    assert y.shape == (1, 6, 8)


def test_spatial_mix_matches_official_formula():
    """y = output(sigmoid(r) * key_norm(WKV(decay/T, first/T, k, v)))."""
    from mmvrwkv.ops import bi_wkv_reference
    att = SpatialMix(16, 2, 1, key_norm=True).double()
    x = torch.randn(2, 12, 16, dtype=torch.float64)
    xx = official_q_shift(x, 1, 1 / 4, (3, 4))
    mix = lambda m: x * m + xx * (1 - m)  # noqa: E731
    k = att.key(mix(att.spatial_mix_k))
    v = att.value(mix(att.spatial_mix_v))
    r = torch.sigmoid(att.receptance(mix(att.spatial_mix_r)))
    wkv = bi_wkv_reference(att.spatial_decay / 12, att.spatial_first / 12, k,
                           v)
    want = att.output(r * att.key_norm(wkv))
    torch.testing.assert_close(att(x, (3, 4)), want)


@pytest.mark.parametrize('key_norm', [False, True])
def test_inference_path_equals_autograd_path(key_norm):
    """Without autograd the mixes reuse buffers (lower peak memory); the
    result must be the one the autograd path computes."""
    x = torch.randn(2, 35, 16)
    for layer in (ChannelMix(16, 4, 1, key_norm=key_norm),
                  SpatialMix(16, 4, 1, key_norm=key_norm)):
        with_grad = layer(x, (5, 7))
        assert with_grad.requires_grad
        with torch.no_grad():
            torch.testing.assert_close(layer(x, (5, 7)), with_grad.detach(),
                                       rtol=0, atol=0)


@pytest.mark.parametrize('C, H, W, s, gamma', [
    (8, 3, 5, 1, 1 / 4), (190, 7, 6, 2, 1 / 4), (12, 2, 9, 1, 1 / 8),
    (16, 2, 2, 3, 1 / 4), (9, 1, 1, 1, 0.)])
def test_q_shift_export_form_is_the_same(C, H, W, s, gamma, monkeypatch):
    """While ONNX export traces the model, Q-Shift takes its slice-and-pad
    form (a small graph): the same values, both layouts (VRWKV's and
    VRWKV6's per head)."""
    from mmvrwkv.models.layers import q_shift_multihead, shift
    x = torch.randn(2, H * W, C)
    eager = q_shift(x, s, gamma, (H, W))
    eager_heads = q_shift_multihead(x.repeat(1, 1, 2), s, gamma, (H, W),
                                    head_dim=C)
    monkeypatch.setattr(shift, 'in_onnx_export', lambda: True)
    assert torch.equal(q_shift(x, s, gamma, (H, W)), eager)
    assert torch.equal(q_shift_multihead(x.repeat(1, 1, 2), s, gamma,
                                         (H, W), head_dim=C), eager_heads)
