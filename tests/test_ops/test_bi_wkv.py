"""Bi-WKV: compiled kernels and reference against an independent oracle."""
import warnings

import pytest
import torch

from mmvrwkv.ops import bi_wkv, bi_wkv_op, bi_wkv_reference, ext_loader
from . import cuda_emu
from .cuda_emu import run, tensor_device
from .helpers import (CHUNK_CASES, CUDA_DEVICE, HAS_EXT, assert_rel_close,
                      chunk_crossing_inputs, make_inputs, naive_bi_wkv,
                      needs_ext)

# 'cuda-emu': the CUDA kernels compiled for a CPU emulation of the CUDA
# execution model (tests/test_ops/cuda_emu), on CPU tensors, in every run.
DEVICES = ['cpu', CUDA_DEVICE, cuda_emu.device_param()]

# B, T, C: T=1, odd C, T not a multiple of any chunk size, C < 16 and > 32
SHAPES = [(1, 1, 1), (2, 1, 3), (2, 7, 5), (3, 37, 19), (1, 196, 33),
          (2, 257, 48), (1, 600, 7)]
ids = [f'B{b}-T{t}-C{c}' for b, t, c in SHAPES]


def test_extension_is_built():
    # CI builds the extension; a silent fallback would hide a broken build.
    assert HAS_EXT, ext_loader.load_error()


@pytest.mark.parametrize('shape', SHAPES, ids=ids)
def test_reference_matches_naive(shape):
    w, u, k, v = make_inputs(*shape, dtype=torch.float64)
    assert_rel_close(bi_wkv_reference(w, u, k, v), naive_bi_wkv(w, u, k, v),
                     1e-12)


@needs_ext
@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64],
                         ids=['fp32', 'fp64'])
@pytest.mark.parametrize('shape', SHAPES, ids=ids)
def test_forward_matches_naive(shape, dtype, device):
    w, u, k, v = make_inputs(*shape, dtype=dtype,
                             device=tensor_device(device))
    y = run(device, w, u, k, v)
    assert y.dtype == dtype and y.device.type == tensor_device(device)
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    assert_rel_close(y, naive_bi_wkv(w, u, k, v), tol)


@needs_ext
@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('k_scale', [100.0, 1e4])
def test_large_keys_do_not_overflow(k_scale, device):
    # exp(100) overflows float32 and exp(1e4) overflows float64.
    w, u, k, v = make_inputs(2, 77, 24, device=tensor_device(device),
                             k_scale=k_scale)
    y = run(device, w, u, k, v)
    assert_rel_close(y, naive_bi_wkv(w, u, k, v), 1e-5)


@needs_ext
@pytest.mark.parametrize('device', DEVICES)
def test_extreme_decay(device):
    w, u, k, v = make_inputs(1, 300, 16, device=tensor_device(device))
    w = torch.linspace(-30, 30, 16,  # strong growth and decay
                       device=tensor_device(device))
    y = run(device, w, u, k, v)
    assert_rel_close(y, naive_bi_wkv(w, u, k, v), 1e-5)


@needs_ext
@pytest.mark.parametrize('case', CHUNK_CASES)
def test_cpu_fast_forward_across_chunks(case):
    """The float CPU forward for model-like parameters (|w| <= 0.25,
    |u| <= 20) scales each 64-token chunk by one exponent. Here the sums
    entering consecutive chunks differ by far more than the float range."""
    w, u, k, v = chunk_crossing_inputs(case)
    y = bi_wkv(*(x.float() for x in (w, u, k, v)), backend='compiled')
    assert_rel_close(y, naive_bi_wkv(w, u, k, v), 1e-5)


@needs_ext
def test_cpu_kernels_run_in_parallel():
    # at::parallel_for is inline OpenMP: a build without -fopenmp runs the
    # kernels on one thread whatever torch.get_num_threads() says.
    ext = ext_loader.load_ext()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert ext.cpu_threads() == 2
    finally:
        torch.set_num_threads(threads)


@needs_ext
@pytest.mark.parametrize('shape', [(1, 1, 2), (2, 5, 3), (1, 19, 17)],
                         ids=lambda s: 'B{}-T{}-C{}'.format(*s))
def test_gradcheck_cpu(shape):
    inputs = make_inputs(*shape, dtype=torch.float64, requires_grad=True)
    # atol 1e-5: the 1e-6 added to the max-normalised denominator moves with
    # the max, which (as in the official kernels and our reference) is not
    # differentiated; the gradients differ from finite differences by O(1e-6).
    assert torch.autograd.gradcheck(
        torch.ops.mmvrwkv.bi_wkv, inputs, eps=1e-6, atol=1e-5, rtol=1e-5)


@needs_ext
@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64],
                         ids=['fp32', 'fp64'])
@pytest.mark.parametrize('shape', SHAPES[1:], ids=ids[1:])
def test_backward_matches_reference_autograd(shape, dtype, device):
    inputs = make_inputs(*shape, dtype=dtype, device=tensor_device(device),
                         requires_grad=True)
    grad = torch.randn(shape, dtype=dtype, device=tensor_device(device))
    got = torch.autograd.grad(run(device, *inputs), inputs, grad)
    want = torch.autograd.grad(bi_wkv_reference(*inputs), inputs, grad)
    tol = 1e-9 if dtype == torch.float64 else 5e-4
    for name, a, b in zip('wukv', got, want):
        assert a.dtype == b.dtype
        assert_rel_close(a, b, tol, name=f'grad {name}')


@needs_ext
@pytest.mark.parametrize('device', DEVICES)
def test_backward_large_keys(device):
    inputs = make_inputs(2, 50, 8, dtype=torch.float64,
                         device=tensor_device(device), k_scale=1e3,
                         requires_grad=True)
    grad = torch.randn(2, 50, 8, dtype=torch.float64,
                       device=tensor_device(device))
    got = torch.autograd.grad(run(device, *inputs), inputs, grad)
    want = torch.autograd.grad(bi_wkv_reference(*inputs), inputs, grad)
    for name, a, b in zip('wukv', got, want):
        assert_rel_close(a, b, 1e-7, name=f'grad {name}')


@needs_ext
@pytest.mark.parametrize('device', DEVICES)
def test_gradients_are_deterministic(device):
    inputs = make_inputs(4, 333, 40, device=tensor_device(device),
                         requires_grad=True)
    grad = torch.randn(4, 333, 40, device=tensor_device(device))
    first = torch.autograd.grad(run(device, *inputs, backend='auto'), inputs,
                                grad)
    second = torch.autograd.grad(run(device, *inputs, backend='auto'),
                                 inputs, grad)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@needs_ext
@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16],
                         ids=['fp16', 'bf16'])
def test_low_precision(dtype, device):
    w, u, k, v = make_inputs(2, 130, 36, dtype=dtype,
                             device=tensor_device(device), requires_grad=True)
    y = run(device, w, u, k, v, backend='auto')
    assert y.dtype == dtype
    # Inputs are read in low precision but accumulated in fp32: compare with
    # fp32 computed from the same (rounded) values.
    assert_rel_close(y, naive_bi_wkv(w, u, k, v), 1e-2)
    grad = torch.randn_like(y)
    got = torch.autograd.grad(y, (w, u, k, v), grad)
    ref_in = [x.detach().float().requires_grad_() for x in (w, u, k, v)]
    want = torch.autograd.grad(bi_wkv_reference(*ref_in), ref_in,
                               grad.float())
    for name, a, b, x in zip('wukv', got, want, (w, u, k, v)):
        assert a.dtype == x.dtype
        assert_rel_close(a, b, 3e-2, name=f'grad {name}')


@needs_ext
def test_non_contiguous_inputs_are_handled():
    w, u, k, v = make_inputs(2, 20, 10)
    kt = k.transpose(0, 1).contiguous().transpose(0, 1)
    assert not kt.is_contiguous()
    assert torch.equal(bi_wkv(w, u, kt, v), bi_wkv(w, u, k, v))


@needs_ext
def test_autocast_bf16_cpu():
    w, u, k, v = make_inputs(1, 50, 16, requires_grad=True)
    lin = torch.nn.Linear(16, 16)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        kk = lin(k)
        y = bi_wkv(w, u, kk, lin(v))
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert w.grad is not None and w.grad.dtype == torch.float32
    assert torch.isfinite(w.grad).all()


@pytest.mark.parametrize('make, error, match', [
    (lambda w, u, k, v: (w, u, k[0], v[0]), ValueError, r'\(B, T, C\)'),
    (lambda w, u, k, v: (w, u, k, v[:, :3]), ValueError, 'must match'),
    (lambda w, u, k, v: (w[:3], u, k, v), ValueError, r'w must have shape'),
    (lambda w, u, k, v: (w, u[None], k, v), ValueError, r'u must have shape'),
    (lambda w, u, k, v: (w, u, k.long(), v), TypeError, 'floating-point'),
    (lambda w, u, k, v: (w, u, k, v.double()), TypeError, 'same dtype'),
    (lambda w, u, k, v: (w, u, k[:, :0], v[:, :0]), ValueError, 'empty'),
    (lambda w, u, k, v: (w, u, k.to('meta'), v), ValueError, 'one device'),
    (lambda w, u, k, v: (w.numpy(), u, k, v), TypeError, 'torch.Tensor'),
], ids=['rank', 'shape', 'w-size', 'u-rank', 'int', 'mixed-dtype', 'empty',
        'device', 'numpy'])
def test_bad_input_is_rejected(make, error, match):
    args = make(*make_inputs(2, 6, 4))
    with pytest.raises(error, match=match):
        bi_wkv(*args)


def test_unknown_backend():
    with pytest.raises(ValueError, match='not one of'):
        bi_wkv(*make_inputs(1, 3, 2), backend='triton')


@needs_ext
def test_compiled_rejects_bad_input_without_crashing():
    w, u, k, v = make_inputs(2, 4, 3)
    op = torch.ops.mmvrwkv.bi_wkv
    with pytest.raises(RuntimeError, match='w and u must be'):
        op(w[:2], u, k, v)
    with pytest.raises(RuntimeError, match='w and u must be'):
        op(w.double(), u, k, v)  # w, u in the accumulation dtype only
    with pytest.raises(RuntimeError, match='grad_output must be'):
        torch.ops.mmvrwkv.bi_wkv_backward(w, u, k, v, k[:, :2])
    # any layout is accepted by the op itself
    kt, vt = k.transpose(0, 1).contiguous(), v.transpose(0, 1).contiguous()
    assert torch.equal(op(w, u, kt.transpose(0, 1), vt.transpose(0, 1)),
                       op(w, u, k, v))


def test_fallback_warns_once(monkeypatch):
    monkeypatch.setattr(ext_loader, '_loaded', True)
    monkeypatch.setattr(ext_loader, '_ext', None)
    monkeypatch.setattr(ext_loader, '_error', 'simulated missing build')
    monkeypatch.setattr(bi_wkv_op, '_HAS_OPS', False)
    monkeypatch.setattr(bi_wkv_op, '_warned_fallback', False)
    w, u, k, v = make_inputs(1, 9, 4)
    with pytest.warns(RuntimeWarning, match='simulated missing build'):
        y = bi_wkv(w, u, k, v)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        bi_wkv(w, u, k, v)  # no second warning
    assert_rel_close(y, naive_bi_wkv(w, u, k, v), 1e-5)
    with pytest.raises(RuntimeError, match='simulated missing build'):
        bi_wkv(w, u, k, v, backend='compiled')


# run with the repository as working directory, which `python -c` puts on
# the path
_ISA_SCRIPT = '''
import torch
from mmvrwkv.ops import ext_loader, bi_wkv
from tests.test_ops.helpers import make_inputs
print(ext_loader.load_ext().cpu_isa())
inputs = make_inputs(2, 150, 37, requires_grad=True)
y = bi_wkv(*inputs, backend='compiled')
grads = torch.autograd.grad(y, inputs, torch.ones_like(y))
torch.save([y.detach(), *grads], {out!r})
'''


@needs_ext
def test_cpu_isa_builds_agree(tmp_path):
    """The CPU builds of the kernels (baseline, AVX2, AVX-512; the best the
    CPU runs is chosen at run time) give the same results;
    MMVRWKV_CPU_ISA=generic or avx2 caps the choice."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    results = {}
    for isa in ('generic', 'avx2', 'auto'):
        out = str(tmp_path / f'{isa}.pt')
        env = dict(os.environ, MMVRWKV_CPU_ISA=isa)
        proc = subprocess.run(
            [sys.executable, '-c', _ISA_SCRIPT.format(out=out)], cwd=root,
            env=env, capture_output=True, text=True, check=True)
        results[isa] = (proc.stdout.split()[-1], torch.load(out))
    assert results['generic'][0] == 'generic'
    assert results['avx2'][0] in ('generic', 'avx2')
    assert results['auto'][0] in ('generic', 'avx2', 'avx512')
    for isa in ('generic', 'avx2'):
        for a, b in zip(results[isa][1], results['auto'][1]):
            assert_rel_close(a, b, 1e-5)
    # on this machine's CPU, the result against the oracle for the baseline
    w, u, k, v = make_inputs(2, 150, 37)
    assert_rel_close(results['generic'][1][0], naive_bi_wkv(w, u, k, v), 2e-5)
