"""The Bi-WKV CUDA kernels on the CPU emulator of the CUDA execution model
(tests/test_ops/cuda_emu): results that do not depend on the order of
threads and blocks, large grids, launch configurations, and the grid of the
launches against an occupancy model of an H100/H200.

test_compiled.py runs every CUDA case on the emulator too (device
'cuda-emu').

bi_wkv_cuda.cu launches ceil(C / 32) x B x S blocks of 32 x nc threads,
the batch in slices of at most 65535 (grid.y's limit), one launch each.
With S = 1 segment a block scans all T tokens of its 32 channels, as before
the split existed; at B = 1, C = 192 that is 6 blocks on a 132-SM GPU. When
the blocks are fewer than the SMs, launch_config splits the tokens into S
segments (at least 64 tokens each, at most 32 of them) if that at least
doubles the threads per channel; a summary kernel runs first and the
backward pass takes a third kernel. The emulated device has 132 SMs unless
a test says otherwise (cuda_emu.sm_count).
"""
import itertools
import json
import math
import os

import pytest
import torch

from mmvrwkv.ops import bi_wkv_reference
from .. import cuda_emu
from ..helpers import (CHUNK_CASES, assert_rel_close, chunk_crossing_inputs,
                       make_inputs, naive_bi_wkv)
from ..test_cuda_resources import (find_tool, usage_from_extension,
                                   usage_from_nvcc)

pytestmark = pytest.mark.skipif(not cuda_emu.SUPPORTED,
                                reason=cuda_emu.WHY_UNSUPPORTED)

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
DTYPE_IDS = ['fp16', 'bf16', 'fp32', 'fp64']
SCHEDULES = [('ascending', 0), ('descending', 0), ('shuffled', 1),
             ('shuffled', 2)]


@pytest.fixture(scope='module')
def emu():
    return cuda_emu.load()


def _run_all(emu, w, u, k, v, gy):
    y = emu.forward(w, u, k, v)
    return [y, *emu.backward(w, u, k, v, gy)]


# 1 chunk, 2 chunks with a short last one, 16 chunks with T not a multiple
# of 16 or 32 and C < 32, several blocks over channels and batch
@pytest.mark.parametrize('dtype', DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize('shape', [(2, 9, 3), (2, 37, 19), (1, 1001, 7),
                                   (3, 257, 70)],
                         ids=lambda s: 'B{}-T{}-C{}'.format(*s))
def test_results_do_not_depend_on_thread_order(emu, shape, dtype):
    """Threads between barriers, and blocks, in ascending, descending and
    two shuffled orders: y, dw, du, dk, dv are bitwise identical."""
    w, u, k, v = make_inputs(*shape, dtype=dtype)
    gy = torch.randn(shape, generator=torch.Generator().manual_seed(3),
                     dtype=torch.float64).to(dtype)
    results = []
    for order, seed in SCHEDULES:
        with cuda_emu.schedule(order, seed):
            results.append(_run_all(emu, w, u, k, v, gy))
    for name, first in zip(['y', 'gw', 'gu', 'gk', 'gv'], results[0]):
        assert torch.isfinite(first).all(), name
    for (order, seed), other in zip(SCHEDULES[1:], results[1:]):
        for name, a, b in zip(['y', 'gw', 'gu', 'gk', 'gv'], results[0],
                              other):
            assert torch.equal(a, b), f'{name} differs with {order}/{seed}'


def test_large_grid_matches_reference(emu):
    """B x C = 8 x 1040: a 33 x 8 grid of 32 x 2 blocks, partial last
    channel block."""
    shape = (8, 40, 1040)
    inputs = make_inputs(*shape, requires_grad=True)
    grad = torch.randn(shape)
    emu.reset_records()
    with cuda_emu.schedule('shuffled', 7):
        y = cuda_emu.bi_wkv(*inputs)
        got = torch.autograd.grad(y, inputs, grad)
    rec = emu.kernel_records()
    for kernel in ('forward_kernel', 'backward_kernel'):
        assert rec[kernel]['max_grid'] == (33, 8, 1)
        assert rec[kernel]['max_threads'] == 64
    assert_rel_close(y, naive_bi_wkv(*inputs), 2e-5)
    want = torch.autograd.grad(bi_wkv_reference(*inputs), inputs, grad)
    for name, a, b in zip('wukv', got, want):
        assert_rel_close(a, b, 5e-4, name=f'grad {name}')


@pytest.mark.parametrize('case', CHUNK_CASES)
def test_sums_across_token_chunks(case):
    """T = 700 is cut into 10 segments of 4 chunks of 16-18 tokens on the
    emulated 132-SM device (16 chunks of 44 tokens on one SM); the sums
    entering a chunk differ from its own by far more than the float32 range
    (the cases of test_cpu_fast_forward_across_chunks)."""
    w, u, k, v = chunk_crossing_inputs(case)
    inputs = [x.float().requires_grad_() for x in (w, u, k, v)]
    y = cuda_emu.bi_wkv(*inputs)
    assert_rel_close(y, naive_bi_wkv(w, u, k, v), 1e-5)
    grads = torch.autograd.grad(y.sum(), inputs)
    ref_in = [x.detach().double().requires_grad_() for x in inputs]
    want = torch.autograd.grad(bi_wkv_reference(*ref_in).sum(), ref_in)
    for name, a, b in zip('wukv', grads, want):
        assert_rel_close(a, b, 1e-3, name=f'grad {name}')


def test_launch_configuration_fits_the_launch_bounds(emu):
    """Both kernels declare __launch_bounds__ equal to the largest block the
    launcher makes (32 x 16); their dynamic shared memory stays within the
    48 KiB a launch gets without opting in (float64 is the largest). On one
    SM the tokens are never split (the split kernels: test_cuda_grid.py)."""
    assert set(cuda_emu.launch_bounds([cuda_emu.KERNEL])) == {
        'forward_kernel', 'backward_kernel', 'summary_kernel',
        'backward_finish_kernel'}
    emu.reset_records()
    for dtype in DTYPES:
        for T in (1, 40, 1000):
            inputs = make_inputs(1, T, 3, dtype=dtype)
            gy = torch.ones(1, T, 3, dtype=dtype)
            with cuda_emu.sm_count(1):
                _run_all(emu, *inputs, gy)
    rec = emu.kernel_records()
    for kernel in ('forward_kernel', 'backward_kernel'):
        assert rec[kernel]['launch_bound'] == 512
        assert rec[kernel]['max_threads'] == 512
        assert rec[kernel]['max_smem'] <= 48 * 1024
        assert rec[kernel]['launches'] == 12


# ---- the grid of the launches -------------------------------------------
# H100 SXM and H200 (compute capability 9.0): per SM.
H100 = dict(sms=132, threads=2048, blocks=32, regs=65536, reg_unit=256,
            smem=228 * 1024, smem_reserved=1024)
SMEM_PER_LAUNCH = 48 * 1024  # without opting in
MIN_SEGMENT = 64  # tokens (4 chunks of 16)
MAX_SEGMENTS = 32
MIN_CHUNK = 16  # tokens per thread
MAX_CHUNKS = 16  # thread rows per block


def blocks_per_sm(threads, regs, smem, gpu=H100):
    """Blocks of ``threads`` threads using ``regs`` registers per thread
    and ``smem`` bytes of shared memory that one SM holds at once
    (registers are allocated per warp in units of 256; the system keeps
    1 KiB of shared memory per block)."""
    warps = -(-threads // 32)
    per_warp = -(-regs * 32 // gpu['reg_unit']) * gpu['reg_unit']
    return min(gpu['blocks'], gpu['threads'] // (warps * 32),
               gpu['regs'] // per_warp // warps,
               gpu['smem'] // (smem + gpu['smem_reserved']))


def test_occupancy_model():
    """The model against the CUDA occupancy calculator's figures."""
    assert blocks_per_sm(512, 128, 40960) == 1  # registers and threads
    assert blocks_per_sm(512, 64, 0) == 2  # registers: 32 warps
    assert blocks_per_sm(512, 32, 0) == 4  # threads
    assert blocks_per_sm(256, 64, 0) == 4  # registers: 32 warps
    assert blocks_per_sm(256, 72, 0) == 3  # 72 -> 2304 per warp: 28 warps
    assert blocks_per_sm(32, 32, 0) == 32  # blocks
    assert blocks_per_sm(128, 32, 100 * 1024) == 2  # shared memory
    assert blocks_per_sm(1024, 65, 0) == 0  # does not fit


def _sm90_usage():
    """Resource usage on sm_90 from ptxas: from the built extension, else
    from nvcc (cached under the emulator's build key, which hashes the
    kernel sources); None without either."""
    found = usage_from_extension()
    if found is not None:
        return found[1].get('90')
    if find_tool('nvcc') is None:
        return None
    path = os.path.join(cuda_emu.cache_dir(),
                        f'ptxas-sm90-{cuda_emu.build_key()}.json')
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    _, usage = usage_from_nvcc(['90'])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f'{path}.{os.getpid()}'
    with open(tmp, 'w') as f:
        json.dump(usage.get('90', {}), f)
    os.replace(tmp, path)
    return usage.get('90')


@pytest.fixture(scope='module')
def registers(emu):
    """{kernel: registers per thread on sm_90}: the most any dtype's
    instantiation uses, from ptxas where available, else the most its
    __launch_bounds__ lets ptxas use (65536 / bound)."""
    bounds = {name: rec['launch_bound']
              for name, rec in emu.kernel_records().items()
              if name in cuda_emu.launch_bounds([cuda_emu.KERNEL])}
    assert len(bounds) == 4 and all(b > 0 for b in bounds.values())
    usage = _sm90_usage()
    regs = {}
    for name, bound in bounds.items():
        tag = f'{len(name)}{name}'
        found = [u['REG'] for f, u in (usage or {}).items() if tag in f]
        regs[name] = max(found) if found else min(255, 65536 // bound)
    return regs


def grid_size(cfg):
    return math.prod(cfg['grid'])


def block_size(cfg):
    return math.prod(cfg['block'])


@pytest.mark.parametrize('T', [1408, 3136, 4096, 4150, 16384, 65536])
def test_batch_1_fills_an_h100(emu, registers, T):
    """B = 1, C = 192 (VRWKV-T): every launch of the forward and backward
    pass fits an SM and its grid has at least one block per SM, all
    resident at once (one full wave). T = 3136: 896 px, 4096: 1024 px,
    4150: 1333 x 800 px."""
    sms = H100['sms']
    cfg = emu.launch_config(1, T, 192, sms)
    blocks, threads = grid_size(cfg), block_size(cfg)
    assert blocks >= sms
    for name, smem in cfg['forward'] + cfg['backward']:
        per_sm = blocks_per_sm(threads, registers[name], smem)
        assert per_sm >= 1, (name, threads, registers[name], smem)
        assert min(blocks, per_sm * sms) >= sms


def test_full_wave_threshold(emu):
    """Below T = 1408 = 22 x 64, B = 1 and C = 192 cannot fill the 132
    SMs: its 6 channel blocks would need 22 token segments, and a segment
    keeps at least 64 tokens (4 chunks of 16) so that the summaries every
    thread merges stay cheaper than its scan. From there on it can."""
    def blocks(T):
        return grid_size(emu.launch_config(1, T, 192, H100['sms']))

    assert blocks(1407) < H100['sms'] <= blocks(1408)
    assert all(blocks(T) >= H100['sms'] for T in range(1408, 70000, 997))
    # below it, the split still multiplies the blocks where it can
    assert blocks(196) == 6 and blocks(1024) == 6 * 1024 // MIN_SEGMENT


# Inputs whose launch stays the one-segment launch (as on a single SM):
# ViT-scale T (196 tokens at 224 px), T too short to double the threads per
# channel, and B x C already giving a block per SM.
@pytest.mark.parametrize('shape', [(1, 196, 192), (1, 511, 192),
                                   (2, 300, 64), (22, 4096, 192),
                                   (8, 40, 1040), (64, 3136, 384),
                                   (1, 1, 1), (3, 257, 70)],
                         ids=lambda s: 'B{}-T{}-C{}'.format(*s))
def test_small_or_wide_inputs_keep_one_segment(emu, shape):
    cfg = emu.launch_config(*shape, H100['sms'])
    assert cfg['grid'][2] == 1
    assert cfg == emu.launch_config(*shape, 1)
    assert [name for name, _ in cfg['forward']] == ['forward_kernel']
    assert [name for name, _ in cfg['backward']] == ['backward_kernel']


def test_configurations_stay_within_limits(emu):
    """Over many shapes and SM counts: blocks of 32 x 1..16 threads,
    1..32 segments of >= 64 tokens in chunks of >= 16 tokens, no split
    where B x C already fills the SMs, a split only where it at least
    doubles the threads per channel, shared memory within 48 KiB in
    float64 too."""
    Bs, Cs = [1, 2, 5], [1, 7, 32, 33, 192, 1040]
    Ts = [1, 15, 16, 63, 64, 511, 512, 700, 1001, 4096, 65536]
    split = 0
    for B, T, C, sms in itertools.product(Bs, Ts, Cs, [1, 8, 132, 1000]):
        cfg = emu.launch_config(B, T, C, sms)
        (gx, gy, S), (bx, nc, bz) = cfg['grid'], cfg['block']
        assert (gx, gy, bx, bz) == (-(-C // 32), B, 32, 1)
        assert cfg['batch_slices'] == 1
        assert 1 <= nc <= MAX_CHUNKS and 1 <= S <= MAX_SEGMENTS
        assert nc == 1 or T // S // nc >= MIN_CHUNK
        for _, smem in cfg['forward'] + cfg['backward']:
            assert 2 * smem <= SMEM_PER_LAUNCH  # float64: twice float
        if S > 1:
            split += 1
            assert gx * gy < sms and T // S >= MIN_SEGMENT
            assert S * nc >= 2 * max(1, min(MAX_CHUNKS, T // MIN_CHUNK))
    assert split > 50


def _run(emu, inputs, gy):
    y = cuda_emu.bi_wkv(*inputs)
    return [y, *torch.autograd.grad(y, inputs, gy)]


def _reference(inputs, gy):
    """y (the numpy oracle) and the gradients of the float64 reference."""
    ref_in = [x.detach().double().requires_grad_() for x in inputs]
    grads = torch.autograd.grad(bi_wkv_reference(*ref_in), ref_in,
                                gy.double())
    return [naive_bi_wkv(*inputs), *grads]


def _check(got, want, y_tol, grad_tol):
    assert_rel_close(got[0], want[0], y_tol, name='y')
    for name, a, b in zip('wukv', got[1:], want[1:]):
        assert_rel_close(a, b, grad_tol, name=f'grad {name}')


# T = 1; T not a multiple of the chunk and C < 32; several channel blocks
# and batch elements (a large B x C: test_large_grid_is_split_on_more_sms).
SPLIT_CASES = [(1, 1, 1), (1, 1001, 7), (2, 700, 40)]


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64],
                         ids=['fp32', 'fp64'])
@pytest.mark.parametrize('shape', SPLIT_CASES,
                         ids=lambda s: 'B{}-T{}-C{}'.format(*s))
def test_split_matches_reference(emu, shape, dtype):
    """y and every gradient, with 1 SM (one segment), 132 and 4096 SMs,
    against the float64 reference; the launches use launch_config's grid
    and, where it splits, its summary and finish kernels."""
    inputs = make_inputs(*shape, dtype=dtype, requires_grad=True)
    gy = torch.randn(shape, generator=torch.Generator().manual_seed(5),
                     dtype=torch.float64).to(dtype)
    y_tol, grad_tol = (1e-12, 1e-9) if dtype == torch.float64 else (2e-5,
                                                                    5e-4)
    want = _reference(inputs, gy)
    segments = set()
    for sms in (1, H100['sms'], 4096):
        cfg = emu.launch_config(*shape, sms)
        segments.add(cfg['grid'][2])
        emu.reset_records()
        with cuda_emu.sm_count(sms):
            got = _run(emu, inputs, gy)
        rec = emu.kernel_records()
        for name, _ in cfg['forward'] + cfg['backward']:
            assert rec[name]['max_grid'] == cfg['grid'], name
            assert rec[name]['max_threads'] == block_size(cfg), name
        launched = {n for n, r in rec.items() if r['launches']}
        assert launched == {n for n, _ in cfg['forward'] + cfg['backward']}
        _check(got, want, y_tol, grad_tol)
    if shape[1] == 1:
        assert segments == {1}  # one token cannot be split
    else:
        assert len(segments) > 1


def test_large_grid_is_split_on_more_sms(emu):
    """B x C = 2 x 520 (34 blocks) on a device of 4096 SMs: 8 segments of
    65 tokens, against the float64 reference."""
    shape = (2, 520, 520)
    cfg = emu.launch_config(*shape, 4096)
    assert cfg['grid'] == (17, 2, 8)
    inputs = make_inputs(*shape, requires_grad=True)
    gy = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    emu.reset_records()
    with cuda_emu.sm_count(4096):
        got = _run(emu, inputs, gy)
    assert emu.kernel_records()['backward_finish_kernel']['max_grid'] == (
        17, 2, 8)
    _check(got, _reference(inputs, gy), 2e-5, 5e-4)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16],
                         ids=['fp16', 'bf16'])
def test_split_low_precision(emu, dtype):
    """float16/bfloat16 in, float32 accumulation, 15 segments of 4
    chunks: against float32 from the same rounded inputs."""
    shape = (1, 1001, 7)
    assert emu.launch_config(*shape, H100['sms'])['grid'][2] > 1
    inputs = make_inputs(*shape, dtype=dtype, requires_grad=True)
    gy = torch.randn(shape, generator=torch.Generator().manual_seed(5),
                     dtype=torch.float64).to(dtype)
    got = _run(emu, inputs, gy)
    assert all(g.dtype == x.dtype for g, x in zip(got[1:], inputs))
    _check(got, _reference(inputs, gy), 1e-2, 3e-2)


def test_split_does_not_depend_on_thread_or_block_order(emu):
    """Threads between barriers and the blocks of all three kernels in
    ascending, descending and two shuffled orders: bitwise equal."""
    shape = (2, 700, 40)
    assert emu.launch_config(*shape, H100['sms'])['grid'][2] > 1
    inputs = make_inputs(*shape, requires_grad=True)
    gy = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    results = []
    for order, seed in [('ascending', 0), ('descending', 0), ('shuffled', 1),
                        ('shuffled', 2)]:
        with cuda_emu.schedule(order, seed):
            results.append(_run(emu, inputs, gy))
    for other in results[1:]:
        for name, a, b in zip(['y', 'gw', 'gu', 'gk', 'gv'], results[0],
                              other):
            assert torch.equal(a, b), name


# --- Batches beyond grid.y's 65535 -----------------------------------------

GRID_Y_MAX = 65535


def test_batch_is_launched_in_slices(emu):
    """Any B up to 2^31 - 1 launches: grid.y holds at most 65535 batch
    elements, so each kernel runs once per slice of them (B = 65535: one
    launch, as before). Above, the batch index would overflow the kernels'
    int: refused with the fix in the message."""
    for B, C, slices in ((22, 192, 1), (65535, 1, 1), (65536, 1, 2),
                         (70000, 40, 2), (1 << 20, 192, 17),
                         (2**31 - 1, 1, 32769)):
        cfg = emu.launch_config(B, 4096, C, H100['sms'])
        assert cfg['grid'] == (-(-C // 32), min(B, GRID_Y_MAX), 1), (B, C)
        assert cfg['batch_slices'] == slices == -(-B // GRID_Y_MAX)
        assert cfg == emu.launch_config(B, 4096, C, 1)
    with pytest.raises(RuntimeError, match='exceeds 2.31 - 1; split the'):
        emu.launch_config(2**31, 16, 1, H100['sms'])


def test_batch_over_65535_runs(emu):
    """B = 65536, the first batch that was refused, on the emulator (T = 2,
    C = 3: two launches of each kernel, 65535 and 1 batch elements): y and
    every gradient match the float64 reference, and y, gk, gv are bitwise
    those of the same batch elements launched in small batches."""
    B, T, C = 65536, 2, 3
    inputs = make_inputs(B, T, C, requires_grad=True)
    gy = torch.randn((B, T, C), generator=torch.Generator().manual_seed(5))
    cfg = emu.launch_config(B, T, C, H100['sms'])
    assert cfg['grid'] == (1, GRID_Y_MAX, 1) and cfg['batch_slices'] == 2
    emu.reset_records()
    got = _run(emu, inputs, gy)
    rec = emu.kernel_records()
    for name in ('forward_kernel', 'backward_kernel'):
        assert rec[name]['launches'] == 2, name
        assert rec[name]['blocks'] == B, name
        assert rec[name]['max_grid'] == (1, GRID_Y_MAX, 1), name
    _check(got, _reference(inputs, gy), 2e-5, 5e-4)
    # batch elements 0-2, the last of the first slice with the first of the
    # second, and the last, alone: y, gk, gv bitwise; gw, gu are sums over
    # the batch
    w, u, k, v = inputs
    for part in (slice(0, 3), slice(GRID_Y_MAX - 1, GRID_Y_MAX + 1),
                 slice(B - 1, B)):
        ks = k.detach()[part].clone().requires_grad_()
        vs = v.detach()[part].clone().requires_grad_()
        small = _run(emu, [w, u, ks, vs], gy[part])
        assert torch.equal(got[0][part], small[0])
        assert torch.equal(got[3][part], small[3])
        assert torch.equal(got[4][part], small[4])
