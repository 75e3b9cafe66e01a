"""Layers on the visible tokens of a masked image (KeptTokens): the 'grid'
mode computes the dense layer restricted to the visible tokens, at their
true distances; the 'official' mode the official MAE encoder's 1-D
arithmetic."""
import pytest
import torch

from mmvrwkv.models.layers import (SHIFT_FUNCS, SpatialMix, SpatialMixV6,
                                   VRWKVBlock)
from mmvrwkv.models.layers.sparse import (KeptTokens, gather_from_grid,
                                          scatter_to_grid, shift_tokens,
                                          single_shift)
from mmvrwkv.ops import bi_wkv6_reference, bi_wkv_reference

H, W, C = 5, 6, 16


def kept_tokens(B=2, n=11, mode='grid', seed=0):
    g = torch.Generator().manual_seed(seed)
    index = torch.stack([torch.randperm(H * W, generator=g)[:n]
                         for _ in range(B)])
    if mode == 'grid':
        index = index.sort(dim=1).values
    return KeptTokens((H, W), index, mode)


def true_distance_bi_wkv(w, u, k, v, index, L):
    """Bi-WKV of the visible tokens at their grid positions, straight from
    the formula: y_t = sum_i e^{x_ti + k_i} v_i / sum_i e^{x_ti + k_i}, x_ti
    = -(|p_t - p_i| - 1) w / L, x_tt = u / L (no other token)."""
    k, v, w, u = (x.double() for x in (k, v, w, u))
    pos = index.double()
    dist = (pos[:, :, None] - pos[:, None, :]).abs()  # (B, n, n)
    x = torch.where(dist[..., None] == 0, u / L,
                    -(dist[..., None] - 1) * w / L)  # (B, n, n, C)
    e = x + k[:, None]
    e = e - e.amax(2, keepdim=True)
    p = e.exp()
    return (p * v[:, None]).sum(2) / (p.sum(2) + 1e-6)


def test_scatter_and_gather_are_inverse():
    kept = kept_tokens()
    x = torch.randn(2, 11, C)
    full = scatter_to_grid(x, kept, fill=-3.)
    assert full.shape == (2, H * W, C)
    assert torch.equal(gather_from_grid(full, kept), x)
    removed = torch.ones(2, H * W, dtype=torch.bool)
    removed.scatter_(1, kept.index, False)
    assert torch.all(full[removed] == -3.)


def test_single_shift_is_the_official_one():
    x = torch.randn(2, 7, 4)
    official = torch.nn.ZeroPad2d((0, 0, 1, -1))(x)
    assert torch.equal(single_shift(x, 1), official)


@pytest.mark.parametrize('name', ['q_shift', 'q_shift_multihead'])
@pytest.mark.parametrize('shift_pixel, gamma', [(1, 1 / 4), (2, 1 / 8)])
def test_grid_shift_is_the_dense_shift_of_the_visible_tokens(
        name, shift_pixel, gamma):
    """'grid' mode shifts the n visible tokens by one gather (indices made
    once per batch): exactly the layer's shift on the grid with removed
    tokens zero, forward and gradient."""
    func = SHIFT_FUNCS[name]
    kept = kept_tokens(n=13, seed=1)
    C6 = 128  # q_shift_multihead works in heads of 64 channels
    x = torch.randn(2, 13, C6, dtype=torch.float64, requires_grad=True)
    want = gather_from_grid(
        func(scatter_to_grid(x, kept), shift_pixel, gamma, (H, W)), kept)
    got = shift_tokens(func, x, shift_pixel, gamma, kept)
    assert torch.equal(got, want)
    assert torch.equal(shift_tokens(func, x, shift_pixel, gamma, kept), got)
    assert len(kept._shift_indices) == 1  # made once, reused
    dy = torch.randn_like(got)
    assert torch.equal(torch.autograd.grad(got, x, dy)[0],
                       torch.autograd.grad(want, x, dy)[0])


def test_spatial_mix_grid_mode_is_bi_wkv_at_true_distances():
    """The Spatial Mix on the visible tokens ('grid'): its Bi-WKV equals
    the formula at the tokens' grid positions (L = H * W), and its shift is
    Q-Shift on the grid with removed neighbours zero."""
    torch.manual_seed(0)
    mix = SpatialMix(C, 2, 1).double()
    with torch.no_grad():  # decays and bonuses of both signs
        mix.spatial_decay.normal_(0, 3)
        mix.spatial_first.normal_(0, 3)
    kept = kept_tokens()
    k, v = torch.randn(2, 11, C).double(), torch.randn(2, 11, C).double()
    got = mix._wkv(k, v, kept)
    want = true_distance_bi_wkv(mix.spatial_decay, mix.spatial_first, k, v,
                                kept.index, H * W)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    # the whole layer: the dense layer on a grid whose removed tokens are
    # zero, for the shift; not for Bi-WKV (zeros would be tokens)
    x = torch.randn(2, 11, C).double()
    dense_shift = mix.shift_func(scatter_to_grid(x, kept), 1, 1 / 4, (H, W))
    assert torch.equal(shift_tokens(mix.shift_func, x, 1, 1 / 4, kept),
                       gather_from_grid(dense_shift, kept))


def test_spatial_mix_official_mode_is_a_sequence():
    """'official': Bi-WKV over the visible tokens as a sequence, divided by
    their count, after the 1-D shift."""
    torch.manual_seed(0)
    mix = SpatialMix(C, 2, 1).double()
    kept = kept_tokens(mode='official')
    x = torch.randn(2, 11, C).double()
    got = mix(x, kept)
    xx = single_shift(x, 1)
    xk, xv, xr = (torch.lerp(xx, x, getattr(mix, n)) for n in (
        'spatial_mix_k', 'spatial_mix_v', 'spatial_mix_r'))
    y = bi_wkv_reference(mix.spatial_decay / 11, mix.spatial_first / 11,
                         mix.key(xk), mix.value(xv))
    want = mix.output(torch.sigmoid(mix.receptance(xr)) * y)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_spatial_mix_v6_grid_mode_decays_by_distance():
    """Bi-WKV6 of the visible tokens ('grid'): removed tokens add nothing
    and decay by the layer's time_decay; equal to the reference on the full
    grid built that way, and to a direct sum over visible pairs."""
    torch.manual_seed(0)
    mix = SpatialMixV6(64, 2, 1).double()
    kept = kept_tokens(B=1, n=9)
    r, k, v, w = (torch.randn(1, 9, 64).double() for _ in range(4))
    got = mix._wkv6(r, k, v, w, kept)
    # direct: y_t = sum_j r_tj (u_j k_tj v_t + sum_{s != t} P(s, t)_j
    # k_sj v_s), P = product of the decays of the grid positions strictly
    # between, visible ones by their w, removed ones by time_decay
    full_w = mix.time_decay.expand(1, H * W, 64).clone()
    full_w[0, kept.index[0]] = w[0]
    decay = torch.exp(-torch.exp(full_w[0]))  # (L, C)
    pos = kept.index[0].tolist()
    u = mix.time_faaaa.reshape(-1)
    want = torch.zeros(9, 64, dtype=torch.float64)
    for t in range(9):
        for s in range(9):
            if s == t:
                weight = u * k[0, t] * r[0, t]
                want[t] += weight.sum() * v[0, t]
                continue
            a, b = sorted((pos[s], pos[t]))
            between = decay[a + 1:b].prod(0)
            want[t] += (r[0, t] * between * k[0, s]).sum() * v[0, s]
    torch.testing.assert_close(got[0], want, rtol=1e-9, atol=1e-9)
    ref = bi_wkv6_reference(*(scatter_to_grid(x, kept) for x in (r, k, v)),
                            full_w, mix.time_faaaa)
    torch.testing.assert_close(got, gather_from_grid(ref, kept))


@pytest.mark.parametrize('mode', ['grid', 'official'])
def test_block_output_ignores_removed_tokens(mode):
    """A VRWKV block on KeptTokens sees the visible tokens only: what stands
    in for the removed ones is a constant."""
    torch.manual_seed(0)
    block = VRWKVBlock(C, 2, 0).eval()
    kept = kept_tokens(mode=mode)
    x = torch.randn(2, 11, C)
    with torch.no_grad():
        y = block(x, kept)
    assert y.shape == x.shape and torch.isfinite(y).all()
