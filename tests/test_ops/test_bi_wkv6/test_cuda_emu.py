"""The Bi-WKV6 CUDA kernels (cuda_ops/bi_wkv6/cuda/bi_wkv6_cuda.cu) on the
CPU emulator of the CUDA execution model (tests/test_ops/cuda_emu): outputs
and every gradient against the float64 reference for every dtype, odd token
counts and head sizes, extreme decays and keys, long sequences (no token
limit), float32 accuracy against float64, results that do not depend on the
order of threads and blocks, and the launch configuration, including the
token split of the forward and the backward launch on emulated devices of 1
to 4096 SMs (1 to 32 segments)."""
import itertools

import pytest
import torch

from mmvrwkv.ops import bi_wkv6_reference
from .. import cuda_emu
from ..helpers import (BI_WKV6_EXTREMES, BI_WKV6_TOL, assert_rel_close,
                       bi_wkv6_expected, bi_wkv6_inputs, check_bi_wkv6)

pytestmark = pytest.mark.skipif(not cuda_emu.SUPPORTED,
                                reason=cuda_emu.WHY_UNSUPPORTED)

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
DTYPE_IDS = ['fp32', 'fp64', 'bf16', 'fp16']
SCHEDULES = [('ascending', 0), ('descending', 0), ('shuffled', 1),
             ('shuffled', 2)]
NAMES = ['y', 'gr', 'gk', 'gv', 'gw', 'gu']


def forward(r, k, v, w, u):
    return cuda_emu.load().bi_wkv6_forward_cuda(r, k, v, w, u)


def backward(r, k, v, w, u, gy):
    return cuda_emu.load().bi_wkv6_backward_cuda(r, k, v, w, u, gy)


def run_all(inputs, gy):
    return [forward(*inputs), *backward(*inputs, gy)]


def grad_output(inputs, seed=3):
    acc = inputs[4].dtype
    g = torch.Generator().manual_seed(seed)
    return torch.randn(inputs[0].shape, generator=g,
                       dtype=torch.float64).to(acc)


# (B, T, H, N): odd T, one chunk, several (float32 chunks hold 32 tokens,
# float64 16) and a short last one; several heads and B > 1; VRWKV6's
# N = 64 and head sizes the kernels pad (4, 8, 12 -> 16; 48 -> 64).
SHAPES = [(1, 1, 1, 64), (2, 15, 2, 64), (1, 63, 3, 64), (2, 197, 1, 64),
          (1, 500, 1, 64), (2, 15, 3, 8), (3, 33, 2, 4), (1, 2, 5, 12),
          (2, 40, 2, 48)]
SHAPE_IDS = ['B{}-T{}-H{}-N{}'.format(*s) for s in SHAPES]


@pytest.mark.parametrize('dtype', DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize('shape', SHAPES, ids=SHAPE_IDS)
def test_matches_reference(shape, dtype):
    if dtype in (torch.bfloat16, torch.float16) and shape[1] > 200:
        pytest.skip('half inputs: the float32 path with T = 500 is covered')
    check_bi_wkv6(forward, backward, bi_wkv6_inputs(*shape, dtype=dtype),
                  name=f'cuda-emu {dtype}')


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64,
                                   torch.bfloat16],
                         ids=['fp32', 'fp64', 'bf16'])
@pytest.mark.parametrize('case', list(BI_WKV6_EXTREMES),
                         ids=list(BI_WKV6_EXTREMES))
def test_extreme_values(case, dtype):
    inputs = bi_wkv6_inputs(2, 70, 1, 64, dtype=dtype,
                            **BI_WKV6_EXTREMES[case])
    _, grads = check_bi_wkv6(forward, backward, inputs, name=case)
    gw = grads[3]  # the first and the last token's decays never matter
    assert torch.all(gw[:, 0] == 0) and torch.all(gw[:, -1] == 0)


def test_overflowing_decay_has_zero_gradient():
    """Where exp(w) overflows the accumulation type, the decay is 0 and its
    gradient exactly 0 (not 0 * inf = NaN), in float32 and float64."""
    for dtype, big in ((torch.float32, 100.0), (torch.float64, 1000.0)):
        r, k, v, w, u = bi_wkv6_inputs(1, 40, 1, 16, dtype=dtype)
        w[:, 1::2] = big
        gw = backward(r, k, v, w, u, grad_output([r, k, v, w, u]))[3]
        assert torch.isfinite(gw).all()
        assert torch.all(gw[:, 1::2] == 0)
        assert gw[:, 2:-1:2].abs().min() > 0


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16],
                         ids=['fp32', 'bf16'])
@pytest.mark.parametrize('shape', [(2, 45, 2, 64), (1, 70, 3, 8)],
                         ids=['B2-T45-H2-N64', 'B1-T70-H3-N8'])
def test_results_do_not_depend_on_thread_order(shape, dtype):
    """Threads between barriers, and blocks, in ascending, descending and
    two shuffled orders: y and every gradient are bitwise identical."""
    inputs = bi_wkv6_inputs(*shape, dtype=dtype)
    gy = grad_output(inputs)
    results = []
    for order, seed in SCHEDULES:
        with cuda_emu.schedule(order, seed):
            results.append(run_all(inputs, gy))
    for name, first in zip(NAMES, results[0]):
        assert torch.isfinite(first).all(), name
    for (order, seed), other in zip(SCHEDULES[1:], results[1:]):
        for name, a, b in zip(NAMES, results[0], other):
            assert torch.equal(a, b), f'{name} differs with {order}/{seed}'


def _max_rel_errors(got, want):
    return {name: ((a.double() - b).abs().max() / b.abs().max()).item()
            for name, a, b in zip(NAMES, got, want)}


@pytest.mark.parametrize('w_shift', [-4.0, -1.0], ids=['slow', 'fast'])
def test_long_sequence_float32_against_float64(w_shift):
    """T = 4096 (1024 x 1024 px at patch 16), beyond the official kernel's
    256 tokens: float32 within 5e-6 of float64 for y and every gradient
    (measured: <= 3e-7 for y, gr, gk, gv, gw, 1.6e-6 for gu, a sum over
    all tokens). float64 is the same kernel, checked against the reference
    above and here on the forward pass."""
    x64 = bi_wkv6_inputs(1, 4096, 1, 64, dtype=torch.float64,
                         w_shift=w_shift)
    gy = grad_output(x64)
    want = run_all(x64, gy)
    assert_rel_close(want[0], bi_wkv6_reference(*x64, chunk_size=64),
                     1e-12, 'float64 y')
    got = run_all([x.float() for x in x64], gy.float())
    errors = _max_rel_errors(got, want)
    assert max(errors.values()) <= 5e-6, errors


def test_no_token_limit():
    """T = 16384 with a small head (N = 16, to keep the emulator fast):
    float32 against float64 on decays from slow to instant."""
    x64 = bi_wkv6_inputs(1, 16384, 1, 16, dtype=torch.float64,
                         w_values=[-6.0, -3.0, -1.0, 1.0, 5.0])
    gy = grad_output(x64)
    want = run_all(x64, gy)
    got = run_all([x.float() for x in x64], gy.float())
    errors = _max_rel_errors(got, want)
    assert max(errors.values()) <= 1e-5, errors


def test_launches_fit_the_launch_bounds():
    """Forward: N threads, backward: 3 N (192 at N = 64), as their
    __launch_bounds__; one block per (batch, head); dynamic shared memory
    within the 48 KiB a launch gets without opting in (float64 is the
    largest)."""
    bounds = cuda_emu.launch_bounds([cuda_emu.KERNEL6])
    assert set(bounds) == {'wkv6_forward_kernel', 'wkv6_backward_kernel',
                           'wkv6_summary_kernel'}
    emu = cuda_emu.load()
    emu.reset_records()
    for dtype in DTYPES:
        inputs = bi_wkv6_inputs(3, 20, 2, 64, dtype=dtype)
        run_all(inputs, grad_output(inputs))
    rec = emu.kernel_records()
    fwd, bwd = rec['wkv6_forward_kernel'], rec['wkv6_backward_kernel']
    assert (fwd['launch_bound'], bwd['launch_bound']) == (64, 192)
    assert (fwd['max_threads'], bwd['max_threads']) == (64, 192)
    assert fwd['max_grid'] == bwd['max_grid'] == (6, 1, 1)
    assert fwd['launches'] == bwd['launches'] == len(DTYPES)
    assert rec['wkv6_summary_kernel']['launches'] == 0  # T < 4 x 64
    assert 40 * 1024 < bwd['max_smem'] <= 48 * 1024
    assert fwd['max_smem'] <= 48 * 1024


def test_rejects_heads_over_64():
    inputs = bi_wkv6_inputs(1, 3, 1, 65)
    with pytest.raises(RuntimeError, match='head size N = 65'):
        forward(*inputs)


def test_catches_a_wrong_bonus():
    """The comparison is sensitive: u doubled fails at float32's
    tolerance."""
    r, k, v, w, u = bi_wkv6_inputs(1, 20, 1, 64)
    want = forward(r, k, v, w, u)
    with pytest.raises(AssertionError):
        assert_rel_close(forward(r, k, v, w, 2 * u), want,
                         BI_WKV6_TOL[torch.float32])


# --- The token split of the forward launch ---------------------------------

H100_SMS = cuda_emu.H100_SMS
MIN_SEGMENT, MAX_SEGMENTS, MIN_SPLIT = 64, 32, 4


def segments(B, H, T, sms=H100_SMS):
    return cuda_emu.load().bi_wkv6_forward_segments(B, H, T, sms)


def test_forward_split_policy():
    """One launch of B x H blocks unless they leave SMs idle; then up to
    ceil(SMs / blocks) segments per head, at most 32, of >= 64 tokens, and
    only if there are at least 4 of them."""
    # VRWKV6-T (3 heads of 64) at B = 1 on 132 SMs
    assert segments(1, 3, 196) == 1  # 224 px: 3 segments would be too few
    assert segments(1, 3, 255) == 1 and segments(1, 3, 256) == 4
    assert segments(1, 3, 1024) == 16
    assert segments(1, 3, 4096) == 32  # the cap: 96 blocks
    assert segments(2, 3, 4150) == 22  # B = 2, 1333 x 800 px: 132 blocks
    assert segments(44, 3, 4096) == 1  # 132 blocks already
    assert segments(1, 3, 1 << 20, sms=1) == 1
    Ts = [1, 63, 64, 255, 256, 257, 1000, 2048, 4150, 65536]
    for B, H, T, sms in itertools.product([1, 2, 7], [1, 3, 6], Ts,
                                          [1, 4, 8, 132, 4096]):
        S, blocks = segments(B, H, T, sms), B * H
        assert 1 <= S <= MAX_SEGMENTS
        if S > 1:
            assert blocks < sms and T // S >= MIN_SEGMENT
            assert MIN_SPLIT <= S <= -(-sms // blocks)
        else:
            assert blocks >= sms or min(-(-sms // blocks), T // MIN_SEGMENT,
                                        MAX_SEGMENTS) < MIN_SPLIT


def _forward_on(sms, inputs):
    emu = cuda_emu.load()
    emu.reset_records()
    with cuda_emu.sm_count(sms):
        y = forward(*inputs)
    return y, emu.kernel_records()


def _reference_y(inputs):
    return bi_wkv6_reference(*(x.double() for x in inputs), chunk_size=32)


# (B, T, H, N, SMs): 5 segments of 66 or 67 tokens (not a multiple of a
# chunk), 4 of 75 or 76 (odd T, B = 2), 5 with a padded head size
# (12 -> 16) and three heads, 5 with B = 2 and three full heads together,
# the maximum 32 of 64 or 65 tokens. Slow
# decays (w ~ N(-6, 1): about 0.85 over a segment), so that every token
# sees the far segments through the merged summaries.
SLOW = -6.0
SPLITS = [(1, 333, 2, 64, 10), (2, 301, 1, 16, 8), (1, 333, 3, 12, 132),
          (2, 333, 3, 64, 30), (1, 2049, 1, 16, 132)]
SPLIT_IDS = ['B{}-T{}-H{}-N{}-SM{}'.format(*s) for s in SPLITS]


@pytest.mark.parametrize('dtype', DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize('case', SPLITS, ids=SPLIT_IDS)
def test_split_forward_matches_reference(case, dtype):
    """y from one segment (1 SM) and from the split launch, each against
    the float64 reference on the same (rounded) inputs; the split runs the
    summary kernel on the (B x H, S) grid."""
    B, T, H, N, sms = case
    if dtype in (torch.bfloat16, torch.float16) and T > 1000:
        pytest.skip('half inputs: the shorter splits cover them')
    S = segments(B, H, T, sms)
    assert S == {10: 5, 8: 4, 30: 5,
                 132: min(T // MIN_SEGMENT, MAX_SEGMENTS)}[sms]
    inputs = bi_wkv6_inputs(B, T, H, N, dtype=dtype, w_shift=SLOW)
    want = _reference_y(inputs)
    acc = inputs[4].dtype
    for n_sms, n_seg in ((1, 1), (sms, S)):
        y, rec = _forward_on(n_sms, inputs)
        summary = rec['wkv6_summary_kernel']
        assert summary['launches'] == (n_seg > 1)
        assert rec['wkv6_forward_kernel']['max_grid'] == (B * H, n_seg, 1)
        if n_seg > 1:
            assert summary['max_grid'] == (B * H, n_seg, 1)
        assert y.dtype == acc
        assert_rel_close(y, want, BI_WKV6_TOL[acc], f'y, {n_seg} segments')


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64,
                                   torch.bfloat16],
                         ids=['fp32', 'fp64', 'bf16'])
@pytest.mark.parametrize('case', list(BI_WKV6_EXTREMES),
                         ids=list(BI_WKV6_EXTREMES))
def test_split_forward_extreme_values(case, dtype):
    """The extreme decays and keys in 8 segments of 65 tokens: decays that
    underflow, exp(w) that overflows (log-decay -inf, product 0)."""
    inputs = bi_wkv6_inputs(1, 520, 1, 16, dtype=dtype,
                            **BI_WKV6_EXTREMES[case])
    assert segments(1, 1, 520) == 8
    y, rec = _forward_on(H100_SMS, inputs)
    assert rec['wkv6_summary_kernel']['launches'] == 1
    acc = inputs[4].dtype
    assert_rel_close(y, _reference_y(inputs), BI_WKV6_TOL[acc], case)


@pytest.mark.parametrize('case', [(2, 301, 1, 16, 8), (1, 333, 2, 64, 10)],
                         ids=['B2-T301-N16-S4', 'B1-T333-H2-N64-S5'])
def test_split_forward_does_not_depend_on_thread_order(case):
    """Both kernels of the split launch with threads (between barriers) and
    blocks in ascending, descending and two shuffled orders: y bitwise
    identical."""
    B, T, H, N, sms = case
    inputs = bi_wkv6_inputs(B, T, H, N, w_shift=SLOW)
    results = []
    for order, seed in SCHEDULES:
        with cuda_emu.schedule(order, seed):
            y, rec = _forward_on(sms, inputs)
        assert rec['wkv6_summary_kernel']['launches'] == 1
        results.append(y)
    assert torch.isfinite(results[0]).all()
    for (order, seed), y in zip(SCHEDULES[1:], results[1:]):
        assert torch.equal(results[0], y), f'differs with {order}/{seed}'


# --- The token split of the backward launch --------------------------------

# Relative error of the split launches against the float64 reference
# (measured over the tests below: <= 1.1e-6 in float32, <= 1.8e-15 in
# float64, 4 to 32 segments; unsplit <= 9.7e-7 and 2.6e-15).
SPLIT_TOL = {torch.float32: 2e-6, torch.float64: 5e-15}


def backward_segments(B, H, T, sms=H100_SMS):
    return cuda_emu.load().bi_wkv6_backward_segments(B, H, T, sms)


def test_backward_split_policy():
    """The backward launch splits as the forward does (its blocks hold an
    SM each, so B x H of them leave SMs idle where the forward's do): up to
    32 segments of >= 64 tokens, at least 4, only when B x H < SMs."""
    assert backward_segments(1, 3, 196) == 1  # VRWKV6-T at 224 px
    assert backward_segments(1, 3, 1024) == 16
    assert backward_segments(1, 3, 4096) == 32
    assert backward_segments(2, 3, 4150) == 22
    assert backward_segments(44, 3, 4096) == 1
    Ts = [1, 63, 64, 255, 256, 257, 1000, 2048, 4150, 65536]
    for B, H, T, sms in itertools.product([1, 2, 7], [1, 3, 6], Ts,
                                          [1, 4, 8, 132, 4096]):
        S = backward_segments(B, H, T, sms)
        assert S == segments(B, H, T, sms)
        assert 1 <= S <= MAX_SEGMENTS
        if S > 1:
            assert B * H < sms and T // S >= MIN_SEGMENT and S >= MIN_SPLIT


def _backward_on(sms, inputs, gy):
    """The gradients on a device of ``sms`` SMs and the backward launch's
    segment count, checked against the kernels it launched."""
    emu = cuda_emu.load()
    B, T, C = inputs[0].shape
    H = inputs[4].shape[0]
    emu.reset_records()
    with cuda_emu.sm_count(sms):
        grads = backward(*inputs, gy)
    rec = emu.kernel_records()
    S = backward_segments(B, H, T, sms)
    assert rec['wkv6_backward_kernel']['launches'] == 1
    assert rec['wkv6_backward_kernel']['max_grid'] == (B * H, S, 1)
    summary = rec['wkv6_summary_kernel']
    # the summaries of k v^T and of r gy^T: two blocks per segment
    assert summary['launches'] == (S > 1)
    assert summary['max_grid'] == ((B * H, S, 2) if S > 1 else (0, 0, 0))
    return grads, S


def _check_split_backward(inputs, sms, want_segments):
    """Every gradient of the launch on ``sms`` SMs (``want_segments``
    segments) and of the unsplit one (1 SM) against the float64 reference,
    with their dtypes and shapes."""
    tol = SPLIT_TOL.get(inputs[0].dtype, BI_WKV6_TOL[inputs[0].dtype])
    gy = grad_output(inputs)
    _, want = bi_wkv6_expected(*inputs, gy)
    for n_sms, n_seg in ((1, 1), (sms, want_segments)):
        grads, S = _backward_on(n_sms, inputs, gy)
        assert S == n_seg
        for name, got, exp, x in zip(NAMES[1:], grads, want, inputs):
            assert got.dtype == x.dtype and got.shape == x.shape, name
            assert_rel_close(got, exp, tol, f'{name}, {S} segments')


# (B, T, H, N, SMs) of the backward split: 5 segments of 66 or 67 tokens
# (not a multiple of a chunk), 4 of 75 or 76 (odd T, B = 2), 5 with a padded
# head size (12 -> 16) and three heads, 5 with B = 2 and three full heads
# split together, 16 of 65 tokens with N = 64, and the maximum 32 of 64 or
# 65 tokens. Slow decays, so that every token's gradients see the far
# segments through the merged summaries.
BWD_SPLITS = SPLITS + [(1, 1040, 1, 64, 16)]
BWD_SPLIT_IDS = ['B{}-T{}-H{}-N{}-SM{}'.format(*s) for s in BWD_SPLITS]


@pytest.mark.parametrize('dtype', DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize('case', BWD_SPLITS, ids=BWD_SPLIT_IDS)
def test_split_backward_matches_reference(case, dtype):
    """gr, gk, gv, gw, gu from the unsplit launch (1 SM) and from the split
    one (summary kernel on the (B x H, S, 2) grid, then the backward on
    (B x H, S)), each against the float64 reference on the same (rounded)
    inputs: within 2e-6 relative in float32, 5e-15 in float64, and the
    half-precision tolerances for half inputs."""
    B, T, H, N, sms = case
    if dtype in (torch.bfloat16, torch.float16) and T > 1000:
        pytest.skip('half inputs: the shorter splits cover them')
    S = backward_segments(B, H, T, sms)
    assert S == {10: 5, 8: 4, 30: 5, 16: 16,
                 132: min(T // MIN_SEGMENT, MAX_SEGMENTS)}[sms]
    inputs = bi_wkv6_inputs(B, T, H, N, dtype=dtype, w_shift=SLOW)
    _check_split_backward(inputs, sms, S)


# SM counts giving T = 2049 (B = H = 1) 1, 4, 5, 7, 8, 11, 16, 23 and 32
# segments (of 64 to 512 tokens).
SEGMENT_COUNTS = [1, 4, 5, 7, 8, 11, 16, 23, 32]


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64],
                         ids=['fp32', 'fp64'])
def test_split_backward_over_segment_counts(dtype):
    """T = 2049 (odd, N = 16) in each segment count from 1 to 32 that the
    policy makes (2 and 3 it never does): every gradient within 2e-6
    (float32) or 5e-15 (float64) of the float64 reference."""
    inputs = bi_wkv6_inputs(1, 2049, 1, 16, dtype=dtype, w_shift=SLOW)
    gy = grad_output(inputs)
    _, want = bi_wkv6_expected(*inputs, gy)
    for sms in SEGMENT_COUNTS:
        grads, S = _backward_on(sms, inputs, gy)
        assert S == (sms if sms >= MIN_SPLIT else 1)
        for name, got, exp in zip(NAMES[1:], grads, want):
            assert_rel_close(got, exp, SPLIT_TOL[dtype],
                             f'{name}, {S} segments')


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64,
                                   torch.bfloat16],
                         ids=['fp32', 'fp64', 'bf16'])
@pytest.mark.parametrize('case', list(BI_WKV6_EXTREMES),
                         ids=list(BI_WKV6_EXTREMES))
def test_split_backward_extreme_values(case, dtype):
    """The extreme decays and keys in 8 segments of 65 tokens, B = 2:
    decays that underflow, exp(w) that overflows (decay product 0), every
    gradient against the reference; gw of the first and last token exactly
    0."""
    inputs = bi_wkv6_inputs(2, 520, 1, 16, dtype=dtype,
                            **BI_WKV6_EXTREMES[case])
    assert backward_segments(2, 1, 520) == 8
    emu = cuda_emu.load()
    emu.reset_records()
    with cuda_emu.sm_count(H100_SMS):
        _, grads = check_bi_wkv6(forward, backward, inputs, name=case)
    rec = emu.kernel_records()
    assert rec['wkv6_backward_kernel']['max_grid'] == (2, 8, 1)
    assert rec['wkv6_summary_kernel']['max_grid'] == (2, 8, 2)
    gw = grads[3]
    assert torch.all(gw[:, 0] == 0) and torch.all(gw[:, -1] == 0)


@pytest.mark.parametrize('case', [(2, 301, 1, 16, 8), (1, 333, 2, 64, 10),
                                  (2, 333, 3, 12, 30)],
                         ids=['B2-T301-N16-S4', 'B1-T333-H2-N64-S5',
                              'B2-T333-H3-N12-S5'])
def test_split_backward_does_not_depend_on_thread_order(case):
    """The summary and backward kernels of the split launch with threads
    (between barriers) and blocks in ascending, descending and two
    shuffled orders: every gradient bitwise identical."""
    B, T, H, N, sms = case
    inputs = bi_wkv6_inputs(B, T, H, N, w_shift=SLOW)
    gy = grad_output(inputs)
    results = []
    for order, seed in SCHEDULES:
        with cuda_emu.schedule(order, seed):
            grads, S = _backward_on(sms, inputs, gy)
        assert S > 1
        results.append(grads)
    for name, first in zip(NAMES[1:], results[0]):
        assert torch.isfinite(first).all(), name
    for (order, seed), other in zip(SCHEDULES[1:], results[1:]):
        for name, a, b in zip(NAMES[1:], results[0], other):
            assert torch.equal(a, b), f'{name} differs with {order}/{seed}'


def test_unsplit_backward_is_one_launch():
    """Where the policy does not split (B x H >= SMs, T < 4 x 64, or one
    SM) the backward is the one launch of B x H blocks, no summary kernel,
    with the same bits whichever reason kept it whole: the unsplit path
    has no arithmetic of the split's (checked bitwise against the kernel
    before the split when it was written)."""
    inputs = bi_wkv6_inputs(2, 333, 3, 16, w_shift=SLOW)
    gy = grad_output(inputs)
    base, S = _backward_on(1, inputs, gy)
    assert S == 1
    for sms in (2, 6):  # B x H = 6 blocks fill 2 and 6 SMs
        grads, S = _backward_on(sms, inputs, gy)
        assert S == 1
        for name, a, b in zip(NAMES[1:], base, grads):
            assert torch.equal(a, b), name
    split, S = _backward_on(H100_SMS, inputs, gy)
    assert S == 5
    # the split differs from it only by rounding
    assert not all(torch.equal(a, b) for a, b in zip(base, split))
    for name, a, b in zip(NAMES[1:], base, split):
        assert_rel_close(a, b, SPLIT_TOL[torch.float32], name)
