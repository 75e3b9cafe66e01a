"""The compiled Bi-WKV6 operator (torch.ops.mmvrwkv.bi_wkv6 and its backward)
against the float64 reference: outputs and every gradient for every dtype,
odd token counts and head sizes, extreme decays and keys, a long sequence,
float64 gradcheck, determinism, the entry point's backends, and the
torch.library contract (opcheck, torch.compile, torch.export).

Devices are pluggable: DEVICES maps a name to (forward, backward, device);
the CUDA emulator's tests reuse helpers.check_bi_wkv6 the same way.
"""
import os
import subprocess
import sys

import pytest
import torch

from mmvrwkv.ops import bi_wkv6
from ..helpers import (BI_WKV6_CUDA_DEVICE, BI_WKV6_EXTREMES, BI_WKV6_TOL,
                       assert_rel_close, bi_wkv6_expected, bi_wkv6_inputs,
                       check_bi_wkv6, needs_bi_wkv6_ext)

pytestmark = needs_bi_wkv6_ext


def _on(device):
    """forward/backward of the compiled ops on ``device``, taking and
    returning CPU tensors (so one comparison serves every device)."""

    def forward(r, k, v, w, u):
        xs = [x.to(device) for x in (r, k, v, w, u)]
        return torch.ops.mmvrwkv.bi_wkv6(*xs).cpu()

    def backward(r, k, v, w, u, gy):
        xs = [x.to(device) for x in (r, k, v, w, u, gy)]
        return [g.cpu() for g in torch.ops.mmvrwkv.bi_wkv6_backward(*xs)]

    return forward, backward


DEVICES = {'cpu': _on('cpu'), 'cuda': _on('cuda')}
DEVICE_PARAMS = ['cpu', BI_WKV6_CUDA_DEVICE]
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
DTYPE_IDS = ['fp32', 'fp64', 'bf16', 'fp16']

# (B, T, H, N): odd T, one and several heads, VRWKV6's N = 64 (the
# specialised kernel) and other head sizes (the generic one).
SHAPES = [(1, 1, 1, 64), (2, 15, 2, 64), (1, 63, 3, 64), (2, 197, 1, 64),
          (1, 500, 2, 64), (2, 15, 3, 8), (3, 33, 2, 4), (1, 2, 5, 12)]
SHAPE_IDS = ['B{}-T{}-H{}-N{}'.format(*s) for s in SHAPES]


@pytest.mark.parametrize('device', DEVICE_PARAMS)
@pytest.mark.parametrize('dtype', DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize('shape', SHAPES, ids=SHAPE_IDS)
def test_matches_reference(shape, dtype, device):
    forward, backward = DEVICES[device]
    check_bi_wkv6(forward, backward, bi_wkv6_inputs(*shape, dtype=dtype),
                  name=f'{device} {dtype}')


@pytest.mark.parametrize('device', DEVICE_PARAMS)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64,
                                   torch.bfloat16], ids=['fp32', 'fp64',
                                                         'bf16'])
@pytest.mark.parametrize('case', list(BI_WKV6_EXTREMES),
                         ids=list(BI_WKV6_EXTREMES))
def test_extreme_values(case, dtype, device):
    forward, backward = DEVICES[device]
    inputs = bi_wkv6_inputs(2, 150, 2, 64, dtype=dtype,
                            **BI_WKV6_EXTREMES[case])
    y, grads = check_bi_wkv6(forward, backward, inputs, name=case)
    # The first and the last token's decays never matter.
    gw = grads[3]
    assert torch.all(gw[:, 0] == 0) and torch.all(gw[:, -1] == 0)


def test_long_sequence_float32():
    """T = 4096 (a 1024 x 1024 image at patch 16): float32 accumulation
    stays close to float64 with slow decays, where states sum many
    tokens."""
    forward, backward = DEVICES['cpu']
    inputs = bi_wkv6_inputs(1, 4096, 1, 64, w_shift=-4.0)
    check_bi_wkv6(forward, backward, inputs, tol=5e-5, name='T=4096')


@pytest.mark.parametrize('shape', [(1, 5, 2, 4), (1, 3, 1, 64)],
                         ids=['B1-T5-H2-N4', 'B1-T3-H1-N64'])
def test_gradcheck_float64(shape):
    inputs = [x.requires_grad_() for x in bi_wkv6_inputs(
        *shape, dtype=torch.float64)]
    assert torch.autograd.gradcheck(
        lambda *a: bi_wkv6(*a, backend='compiled'), inputs)


def test_deterministic_across_threads():
    """Each (batch, head) is one task with a fixed order of sums, and gu is
    summed over the batch in a fixed order: results are bitwise equal
    whatever the thread count."""
    inputs = bi_wkv6_inputs(3, 70, 2, 64)
    gy = torch.randn(3, 70, 128)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 1):
            torch.set_num_threads(n)
            results.append([torch.ops.mmvrwkv.bi_wkv6(*inputs)] + list(
                torch.ops.mmvrwkv.bi_wkv6_backward(*inputs, gy)))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


def test_isa_builds_agree(tmp_path):
    """The kernel builds for other instruction sets give the same results
    (within float32 rounding), each in a fresh process (MMVRWKV_CPU_ISA is
    read once); the library alone is loaded there, to start fast."""
    import mmvrwkv._ext
    code = ('import sys, torch\n'
            'torch.ops.load_library(sys.argv[2])\n'
            'g = torch.Generator().manual_seed(0)\n'
            'x = [torch.randn(2, 40, 128, generator=g) for _ in range(5)]\n'
            'u = torch.randn(2, 64, generator=g)\n'
            'y = torch.ops.mmvrwkv.bi_wkv6(*x[:4], u)\n'
            'gs = torch.ops.mmvrwkv.bi_wkv6_backward(*x[:4], u, x[4])\n'
            'torch.save([y, *gs], sys.argv[1])\n')
    outs = []
    for isa in ('generic', 'avx2', ''):
        path = str(tmp_path / f'{isa or "best"}.pt')
        env = dict(os.environ, MMVRWKV_CPU_ISA=isa)
        subprocess.run(
            [sys.executable, '-c', code, path, mmvrwkv._ext.__file__],
            check=True, env=env)
        outs.append(torch.load(path))
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            assert_rel_close(b, a, 1e-5)


def test_non_contiguous_inputs():
    r, k, v, w, u = bi_wkv6_inputs(2, 21, 2, 8)
    rt = r.transpose(0, 1).contiguous().transpose(0, 1)
    wt = torch.empty(2, 21, 32)[..., ::2].copy_(w)  # same values, strided
    assert not rt.is_contiguous() and not wt.is_contiguous()
    assert torch.equal(torch.ops.mmvrwkv.bi_wkv6(rt, k, v, w, u),
                       torch.ops.mmvrwkv.bi_wkv6(r, k, v, w, u))
    assert torch.equal(torch.ops.mmvrwkv.bi_wkv6(r, k, v, wt, u),
                       torch.ops.mmvrwkv.bi_wkv6(r, k, v, w, u))


@pytest.mark.parametrize('args, match', [
    (dict(u=torch.randn(2, 8, dtype=torch.float64)), 'u must be Float'),
    (dict(w=torch.randn(2, 5, 16, dtype=torch.float64)), 'one dtype'),
    (dict(u=torch.randn(3, 4)), r'u must be \(H, N\)'),
    (dict(k=torch.randn(2, 6, 16)), 'must all be'),
])
def test_op_checks(args, match):
    """The C++ entry checks what the Python entry does not (when the op is
    called directly)."""
    inputs = dict(r=torch.randn(2, 5, 16), k=torch.randn(2, 5, 16),
                  v=torch.randn(2, 5, 16), w=torch.randn(2, 5, 16),
                  u=torch.randn(2, 8))
    inputs.update(args)
    with pytest.raises(RuntimeError, match=match):
        torch.ops.mmvrwkv.bi_wkv6(**inputs)


def test_reversal_symmetry_and_sensitivity():
    """Bi-WKV6 is symmetric in the token order (the bonus u is the current
    token's only), so reversing the tokens reverses y; and the comparison
    catches a wrong kernel (u doubled), even at bfloat16's tolerance."""
    r, k, v, w, u = bi_wkv6_inputs(1, 20, 1, 8)
    gy = torch.randn(1, 20, 8)
    want, _ = bi_wkv6_expected(r, k, v, w, u, gy)
    y = torch.ops.mmvrwkv.bi_wkv6(r, k, v, w, u)
    assert_rel_close(y, want, BI_WKV6_TOL[torch.float32])
    flipped = torch.ops.mmvrwkv.bi_wkv6(r.flip(1), k.flip(1), v.flip(1),
                                        w.flip(1), u).flip(1)
    assert_rel_close(flipped, want, BI_WKV6_TOL[torch.float32])
    wrong = torch.ops.mmvrwkv.bi_wkv6(r, k, v, w, 2 * u)
    with pytest.raises(AssertionError):
        assert_rel_close(wrong, want, BI_WKV6_TOL[torch.bfloat16])
