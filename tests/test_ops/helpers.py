"""Helpers shared by the operator tests."""
import numpy as np
import torch


def naive_bi_wkv(w, u, k, v, eps=1e-6):
    """Independent float64 O(T^2) Bi-WKV, straight from the formula, in numpy.

    Each output is normalised by the largest exponent it sums, which is where
    the kernels' 1e-6 is added too.
    """
    w, u, k, v = (np.asarray(x.detach().double().cpu()) for x in (w, u, k, v))
    B, T, C = k.shape
    y = np.empty_like(k)
    idx = np.arange(T)
    for t in range(T):
        dist = np.abs(t - idx)[:, None].astype(np.float64)  # (T, 1)
        ex = np.where(dist == 0, u[None, :], -(dist - 1) * w[None, :])
        ex = ex[None] + k  # (B, T, C)
        m = ex.max(axis=1, keepdims=True)
        p = np.exp(ex - m)
        y[:, t] = (p * v).sum(1) / (p.sum(1) + eps)
    return torch.from_numpy(y)


def assert_rel_close(actual, expected, tol, name='', floor=1e-3):
    """Max abs error relative to the max magnitude of the expected signal
    (at least ``floor``, so near-zero signals are compared absolutely);
    fails on NaN/Inf."""
    actual = actual.detach().double().cpu()
    expected = expected.detach().double().cpu()
    assert actual.shape == expected.shape, (name, actual.shape,
                                            expected.shape)
    assert torch.isfinite(actual).all(), f'{name}: non-finite values'
    scale = expected.abs().max().item()
    err = (actual - expected).abs().max().item() / max(scale, floor)
    assert err <= tol, f'{name}: relative error {err:.3g} > {tol:.3g}'


def make_inputs(B, T, C, dtype=torch.float32, device='cpu', k_scale=1.0,
                requires_grad=False):
    g = torch.Generator().manual_seed(B * 1000003 + T * 1009 + C)
    w = torch.randn(C, generator=g, dtype=torch.float64) / max(T, 1) * 4
    u = torch.randn(C, generator=g, dtype=torch.float64)
    k = torch.randn(B, T, C, generator=g, dtype=torch.float64) * k_scale
    v = torch.randn(B, T, C, generator=g, dtype=torch.float64)
    wdt = torch.float64 if dtype == torch.float64 else torch.float32
    out = [w.to(device, wdt), u.to(device, wdt), k.to(device, dtype),
           v.to(device, dtype)]
    if requires_grad:
        for x in out:
            x.requires_grad_(True)
    return out
