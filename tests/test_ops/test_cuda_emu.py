"""The Bi-WKV CUDA kernels on the CPU emulator of the CUDA execution model
(tests/test_ops/cuda_emu), and the emulator's own checks.

test_bi_wkv.py and test_bi_wkv_extreme.py run every CUDA case on the
emulator too (device 'cuda-emu'); here: results that do not depend on the
order of threads and blocks, launch configurations, large grids, and that
the emulator reports what it is meant to catch."""
import math

import pytest
import torch

from mmvrwkv.ops import bi_wkv_reference
from . import cuda_emu
from .helpers import (CHUNK_CASES, assert_rel_close, chunk_crossing_inputs,
                      make_inputs, naive_bi_wkv)

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


def test_batch_beyond_grid_limit_is_rejected(emu):
    w, u, k, v = make_inputs(65536, 1, 1)
    with pytest.raises(RuntimeError, match='split the batch'):
        emu.forward(w, u, k, v)


def test_unknown_order_is_rejected(emu):
    with pytest.raises(RuntimeError, match='unknown thread order'):
        emu.set_schedule('random')


# --- the emulator's own checks ---------------------------------------------

ERRORS = {
    'bounded_too_many': r'too many resources requested for launch: 128 '
                        r'threads per block exceed __launch_bounds__\(64\)',
    'unchecked_launch_error': r'no C10_CUDA_KERNEL_LAUNCH_CHECK\(\)',
    'block_too_big': '1056 threads per block exceed 1024',
    'block_z_too_big': r'blockDim\.z = 65 exceeds 64',
    'grid_y_too_big': r'gridDim\.y = 65536 exceeds 65535',
    'empty_grid': 'empty grid or block',
    'early_exit_barrier': r'divergent __syncthreads\(\): 16 threads wait .* '
                          r'16 threads have exited',
    'two_barriers': r'divergent __syncthreads\(\): thread \(0,0,0\) waits at '
                    r'.*selftest_kernels.cu:\d+, thread \(1,0,0\) at',
    'smem_overrun': '0 bytes past the end of the 128 bytes of dynamic shared',
    'smem_over_48k': '49156 bytes of dynamic shared memory exceed the limit '
                     'of 49152',
    'shfl_after_exit': r'waits in a warp collective for thread \(16,0,0\), '
                       'which has exited',
    'shfl_bad_mask': r'thread \(1,0,0\): cuda_emu: thread \(1,0,0\) at '
                     r'.*selftest_kernels.cu:\d+ calls a warp collective '
                     r'with mask 0x1 that excludes its own lane',
}


@pytest.mark.parametrize('name', list(ERRORS))
def test_emulator_reports(emu, name):
    with pytest.raises(RuntimeError, match=ERRORS[name]):
        emu.selftest(name)


def test_emulator_runs_valid_kernels(emu):
    assert emu.selftest('bounded')[:64].tolist() == list(range(64))
    assert emu.selftest('block_1024').tolist() == list(range(1024))
    out = emu.selftest('exit_after_barrier')
    assert out[:16].tolist() == list(range(31, 15, -1))
    assert (out[16:] == -1).all()
    for name in ('smem_48k', 'smem_opt_in'):  # 64 KiB after opting in
        assert (emu.selftest(name)[:32] == 2).all()
    assert torch.isnan(emu.selftest('empty_is_nan')).all()


def test_emulator_fills_shared_memory_with_nan(emu):
    out = emu.selftest('smem_uninitialised')
    assert out[0] == 1 and torch.isnan(out[1:32]).all()


def test_emulator_thread_and_block_orders(emu):
    # a missing __syncthreads(): the result depends on the order
    results = {}
    for order, seed in SCHEDULES:
        with cuda_emu.schedule(order, seed):
            results[order, seed] = emu.selftest('race')[:64]
    asc, desc = results['ascending', 0], results['descending', 0]
    assert torch.isnan(asc[:63]).all() and asc[63] == 0
    assert desc[:63].tolist() == list(range(1, 64)) and torch.isnan(desc[63])
    assert not torch.equal(results['shuffled', 1].nan_to_num(-2),
                           results['shuffled', 2].nan_to_num(-2))
    orders = {}
    for order, seed in SCHEDULES:
        with cuda_emu.schedule(order, seed):
            orders[order, seed] = emu.selftest('block_order')[:12].tolist()
    assert orders['ascending', 0] == list(range(12))
    assert orders['descending', 0] == list(range(11, -1, -1))
    assert sorted(orders['shuffled', 1]) == list(range(12))
    assert orders['shuffled', 1] != orders['shuffled', 2]


def test_emulator_warp_collectives(emu):
    out = emu.selftest('warp_ops')
    lane = torch.arange(64) % 32
    assert out[:64].tolist() == [496.] * 32 + [1520.] * 32  # warp sums
    assert out[64:128].tolist() == torch.where(
        lane == 0, torch.arange(64), torch.arange(64) - 1).tolist()
    t = torch.arange(64)
    down = torch.where(t % 16 + 3 < 16, t + 3, t)  # width 16
    assert out[128:192].tolist() == down.tolist()
    assert (out[192:256] == float(torch.tensor(0xAAAAAAAA,
                                               dtype=torch.float32))).all()
    assert out[256:320].tolist() == (t // 8 * 8 + 5).tolist()  # width 8
    assert math.isclose(out[320].item(), -1)
    out = emu.selftest('half_warps')[:64]  # two masks in one warp
    half = torch.arange(64) // 16
    assert out.tolist() == (half * 256 + 120).float().tolist()
