"""Helpers shared by the operator tests."""
import numpy as np
import pytest
import torch

from mmvrwkv.ops import bi_wkv6_backends, bi_wkv_backends

# The compiled Bi-WKV kernels: tests of them are skipped (needs_ext) without
# the extension, and their 'cuda' device (CUDA_DEVICE, beside 'cpu' and the
# emulator's cuda_emu.device_param() in a test's DEVICES) without a GPU and
# the CUDA kernels.
HAS_EXT = 'compiled' in bi_wkv_backends('cpu')
needs_ext = pytest.mark.skipif(not HAS_EXT, reason='extension not built')
CUDA_DEVICE = pytest.param('cuda', marks=[pytest.mark.gpu, pytest.mark.skipif(
    not (torch.cuda.is_available() and 'compiled' in bi_wkv_backends('cuda')),
    reason='needs a GPU and the CUDA kernels')])
# The same for Bi-WKV6's kernels.
needs_bi_wkv6_ext = pytest.mark.skipif(
    'compiled' not in bi_wkv6_backends('cpu'), reason='extension not built')
BI_WKV6_CUDA_DEVICE = pytest.param('cuda', marks=[
    pytest.mark.gpu, pytest.mark.skipif(
        not (torch.cuda.is_available()
             and 'compiled' in bi_wkv6_backends('cuda')),
        reason='needs a GPU and the CUDA kernels')])


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


def check_compile_fullgraph(loss, inputs, names, backend):
    """``loss(*inputs)`` and its gradients with respect to ``inputs`` (named
    by ``names``) are the same under ``torch.compile(fullgraph=True)`` with
    ``backend`` as in eager mode; fullgraph fails on any graph break."""
    torch._dynamo.reset()
    want = loss(*inputs)
    want_grads = torch.autograd.grad(want, inputs)
    compiled = torch.compile(loss, fullgraph=True, backend=backend)
    got = compiled(*inputs)
    got_grads = torch.autograd.grad(got, inputs)
    assert_rel_close(got, want, 1e-6)
    for name, a, b in zip(names, got_grads, want_grads):
        assert_rel_close(a, b, 1e-6, name=f'grad {name}')


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


# Sums that cross chunks of tokens: the sums entering consecutive chunks
# differ by far more than the float32 range.
CHUNK_CASES = ['peaks', 'rising-with-growth', 'bonus']


def chunk_crossing_inputs(case, T=700, C=16):
    """float64 (w, u, k, v) of batch 1 for one of CHUNK_CASES: two peaks in
    k, k rising across the sequence with growth (w < 0), or a large bonus u
    beside peaks every 37 tokens."""
    g = torch.Generator().manual_seed(0)
    k = torch.randn(1, T, C, generator=g, dtype=torch.float64) * 3
    v = torch.randn(1, T, C, generator=g, dtype=torch.float64)
    w = torch.full((C, ), 0.25, dtype=torch.float64)
    u = torch.zeros(C, dtype=torch.float64)
    if case == 'peaks':  # dominate ~360 tokens each way, then fade out
        k[0, 5] += 100
        k[0, T - 5] += 100
    elif case == 'rising-with-growth':
        k += torch.linspace(-500, 500, T, dtype=torch.float64)[None, :, None]
        w = -w
    else:
        u = torch.linspace(-20, 20, C, dtype=torch.float64)
        k[0, ::37] += 200
    return w, u, k, v


def extreme_inputs(T, C, dtype, k_scale, w, seed=0, device='cpu'):
    """Bi-WKV inputs (w, u, k, v) of batch 1 with the given w per channel
    and keys of scale ``k_scale``, rounded to ``dtype`` (w, u to the
    accumulation dtype), on ``device`` ('cuda-emu': the CPU)."""
    g = torch.Generator().manual_seed(seed)
    wdt = torch.float64 if dtype == torch.float64 else torch.float32
    k = (torch.randn(1, T, C, generator=g, dtype=torch.float64) *
         k_scale).to(dtype)
    v = torch.randn(1, T, C, generator=g, dtype=torch.float64).to(dtype)
    u = torch.randn(C, generator=g, dtype=torch.float64).to(wdt)
    # a copy of w: callers set requires_grad on the returned tensors, and
    # .to() of the same dtype and device would return W_EXTREME itself
    device = 'cpu' if device == 'cuda-emu' else device
    return [x.to(device)
            for x in (w.to(wdt, copy=True), u, k, v)]


# w per channel: strong growth (-), none, strong decay (+); the model passes
# spatial_decay / T, so large |w| means a large learned decay at small T
W_EXTREME = torch.tensor([-50., -1., -1e-3, 0., 1e-3, 1., 50., 1e3])


# The extreme inputs of the Bi-WKV tests (compiled kernels, chunked form,
# ONNX): keys of magnitude 1e4 and 30 with strong growth and decay.
BI_WKV_EXTREMES = {
    'k1e4': dict(T=300, k_scale=1e4, w=W_EXTREME),
    'k-1e4': dict(T=300, k_scale=-1e4, w=W_EXTREME),
    'k30': dict(T=300, k_scale=30., w=W_EXTREME),
}


# ---- Bi-WKV6 (VRWKV6) -----------------------------------------------------
# Shared by the Bi-WKV6 tests of every device (test_bi_wkv6/: cpu, cuda,
# the CUDA emulator): an implementation under test is a pair
# forward(r, k, v, w, u) -> y and backward(r, k, v, w, u, gy) -> (gr, gk, gv,
# gw, gu) on CPU tensors, with the dtypes of torch.ops.mmvrwkv.bi_wkv6.

# Relative error allowed against the float64 reference evaluated on the same
# (rounded) inputs: only accumulation (float32) and output rounding remain.
BI_WKV6_TOL = {
    torch.float64: 1e-11,
    torch.float32: 2e-5,
    torch.bfloat16: 1e-2,  # gradients are written in bfloat16 (8 bits)
    torch.float16: 2e-3,   # gradients are written in float16 (11 bits)
}


def bi_wkv6_inputs(B, T, H, N, dtype=torch.float32, device='cpu',
                   w_shift=-1.0, w_values=None, k_scale=1.0, seed=0):
    """r, k, v, w of shape (B, T, H * N) in ``dtype`` and u (H, N) in the
    accumulation dtype (float64 for float64, else float32), as the kernels
    take them. w is N(w_shift, 1), or drawn from ``w_values`` element by
    element when given (extreme decays: e.g. -20 keeps everything, 5 or 100
    forget at once)."""
    g = torch.Generator().manual_seed(seed * 7919 + B * 1009 + T * 31 + H)
    C = H * N
    r, k, v = (torch.randn(B, T, C, generator=g, dtype=torch.float64)
               for _ in range(3))
    k = k * k_scale
    if w_values is None:
        w = torch.randn(B, T, C, generator=g, dtype=torch.float64) + w_shift
    else:
        choice = torch.randint(len(w_values), (B, T, C), generator=g)
        w = torch.tensor(w_values, dtype=torch.float64)[choice]
    u = torch.randn(H, N, generator=g, dtype=torch.float64) * 0.5
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    return ([x.to(device, dtype) for x in (r, k, v, w)] + [u.to(device, acc)])


def bi_wkv6_expected(r, k, v, w, u, gy):
    """y and the gradients (gr, gk, gv, gw, gu) of <y, gy> from the float64
    reference on the given (possibly rounded) inputs, on the CPU."""
    from mmvrwkv.ops import bi_wkv6_reference
    xs = [x.detach().cpu().double().requires_grad_() for x in (r, k, v, w, u)]
    y = bi_wkv6_reference(*xs, chunk_size=32)
    grads = torch.autograd.grad(y, xs, gy.detach().cpu().double())
    return y.detach(), grads


def check_bi_wkv6(forward, backward, inputs, tol=None, name=''):
    """Runs ``forward``/``backward`` on ``inputs`` (from bi_wkv6_inputs) and
    compares y and every gradient with the float64 reference: dtypes as the
    operator's contract, values within ``tol`` (BI_WKV6_TOL by default)
    relative to each tensor's largest expected magnitude."""
    r, k, v, w, u = inputs
    acc = torch.float64 if r.dtype == torch.float64 else torch.float32
    tol = BI_WKV6_TOL[r.dtype] if tol is None else tol
    g = torch.Generator().manual_seed(r.shape[1])
    gy = torch.randn(r.shape, generator=g, dtype=torch.float64).to(
        r.device, acc)
    want_y, want_grads = bi_wkv6_expected(r, k, v, w, u, gy)
    y = forward(r, k, v, w, u)
    assert y.dtype == acc and y.shape == r.shape, (y.dtype, y.shape)
    assert_rel_close(y, want_y, BI_WKV6_TOL[acc] if acc != r.dtype else tol,
                     f'{name} y')
    grads = backward(r, k, v, w, u, gy)
    for gname, got, want, x in zip(['gr', 'gk', 'gv', 'gw', 'gu'], grads,
                                   want_grads, inputs):
        assert got.dtype == x.dtype and got.shape == x.shape, (
            gname, got.dtype, got.shape)
        assert_rel_close(got, want, tol, f'{name} {gname}')
    return y, grads


# Decays that keep everything (w = -20: exp(-exp(-20)) rounds to 1 in
# float32), forget at once (w = 5: the decay underflows to 0 in float32;
# w = 100: exp(w) overflows float32) and mixtures of both, with large keys.
BI_WKV6_EXTREMES = {
    'keep-all': dict(w_values=[-20.0]),
    'forget-all': dict(w_values=[5.0]),
    'overflow-w': dict(w_values=[100.0, -3.0]),
    'mixed': dict(w_values=[-20.0, -5.0, -1.0, 0.0, 2.0, 5.0]),
    'large-k': dict(k_scale=50.0, w_values=[-20.0, -0.5, 5.0]),
}


# ---- multi-scale deformable attention (the adapters) ----------------------
MSDA_SHAPES = [(4, 6), (2, 3), (1, 1)]  # odd, non-square levels and a pixel


def msda_inputs(B=2, Q=5, heads=3, D=4, points=2, shapes=MSDA_SHAPES,
                dtype=torch.float32, device='cpu', seed=0, margin=0.1):
    """value (B, S, heads, D), sampling_locations (B, Q, heads, levels,
    points, 2) in [-margin, 1 + margin] (some samples fall outside the map)
    and softmax-normalised attention_weights (B, Q, heads, levels,
    points)."""
    g = torch.Generator().manual_seed(seed)
    S = sum(h * w for h, w in shapes)
    levels = len(shapes)
    value = torch.randn(B, S, heads, D, generator=g, dtype=torch.float64)
    loc = torch.rand(B, Q, heads, levels, points, 2, generator=g,
                     dtype=torch.float64) * (1 + 2 * margin) - margin
    weights = torch.randn(B, Q, heads, levels * points, generator=g,
                          dtype=torch.float64).softmax(-1).view(
                              B, Q, heads, levels, points)
    return [x.to(device, dtype) for x in (value, loc, weights)]


def naive_ms_deform_attn(value, shapes, loc, weights):
    """Independent float64 oracle of multi-scale deformable sampling in
    numpy: per sample, bilinear interpolation of the four pixels around
    (x * w - 0.5, y * h - 0.5) with zeros outside the map."""
    value, loc, weights = (np.asarray(x.detach().double().cpu())
                           for x in (value, loc, weights))
    B, S, heads, D = value.shape
    Q, points = loc.shape[1], loc.shape[4]
    out = np.zeros((B, Q, heads, D))
    start = 0
    for level, (h, w) in enumerate(shapes):
        maps = value[:, start:start + h * w].reshape(B, h, w, heads, D)
        start += h * w
        for b in range(B):
            for q in range(Q):
                for m in range(heads):
                    for p in range(points):
                        x = loc[b, q, m, level, p, 0] * w - 0.5
                        y = loc[b, q, m, level, p, 1] * h - 0.5
                        x0, y0 = int(np.floor(x)), int(np.floor(y))
                        sample = np.zeros(D)
                        for yy in (y0, y0 + 1):
                            for xx in (x0, x0 + 1):
                                if 0 <= yy < h and 0 <= xx < w:
                                    c = (1 - abs(x - xx)) * (1 - abs(y - yy))
                                    sample += c * maps[b, yy, xx, m]
                        out[b, q, m] += weights[b, q, m, level, p] * sample
    return torch.from_numpy(out.reshape(B, Q, heads * D))
