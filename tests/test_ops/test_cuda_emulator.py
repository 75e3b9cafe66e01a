"""The CPU emulator of the CUDA execution model (tests/test_ops/cuda_emu)
checks what it is meant to catch: launch bounds and limits, divergent
barriers, shared-memory overruns and uninitialised reads, races (through
the order of threads and blocks), warp collectives."""
import math

import pytest
import torch

from . import cuda_emu

pytestmark = pytest.mark.skipif(not cuda_emu.SUPPORTED,
                                reason=cuda_emu.WHY_UNSUPPORTED)
SCHEDULES = [('ascending', 0), ('descending', 0), ('shuffled', 1),
             ('shuffled', 2)]


@pytest.fixture(scope='module')
def emu():
    return cuda_emu.load()


def test_unknown_order_is_rejected(emu):
    with pytest.raises(RuntimeError, match='unknown thread order'):
        emu.set_schedule('random')


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
