"""float32 accuracy of the Bi-WKV kernels against float64, up to T = 16384.

The float32 kernels (the CPU kernels, the CUDA kernels on a GPU, and the CUDA
kernels on the CPU emulator of the CUDA execution model, 'cuda-emu') must
stay within 5e-6 of float64 on the same rounded inputs for the output y, and
within 1e-5 for the gradients, at every sequence length: relative error =
max abs error / max abs of the float64 signal, per tensor.

The oracle is the float64 CPU kernel (checked against the O(T^2) numpy
oracle below): the O(T^2) oracles take minutes per call at T = 16384 (numpy
3.3 s, the float64 PyTorch reference 13 s at T = 2048, C = 32, 2 cores).

Measured on this repository's CPU (AVX-512 build) and the emulator, before
the fix (the scans subtracted w from a rounded running exponent at every
token) at T = 256 / 16384, largest error of y and of the four gradients:

    inputs       CPU y          CPU grads      cuda-emu y     cuda-emu grads
    model        1.1e-6/1.1e-5  1.1e-5/6.6e-4  9.4e-7/1.5e-4  3.4e-6/1.5e-4
    large-keys   2.7e-6/1.3e-4  1.0e-4/1.0e-2  1.4e-5/1.4e-3  1.8e-5/1.2e-3
    peaked       1.8e-6/5.5e-5  4.6e-5/5.4e-3  6.1e-6/5.1e-4  7.5e-6/1.1e-3

and after, at every T here: y <= 1.9e-6 on the CPU (its fast forward leaves
out the 1e-6 of the denominator) and <= 3.4e-7 on cuda-emu, gradients
<= 4.7e-6 (CPU: its backward sums over all T tokens) and <= 2.5e-6
(cuda-emu). docs/reliability.md has the table per T.
"""
import functools

import pytest
import torch

from mmvrwkv.ops import bi_wkv
from . import cuda_emu
from .cuda_emu import run, tensor_device
from .helpers import CUDA_DEVICE, naive_bi_wkv, needs_ext

pytestmark = needs_ext
DEVICES = ['cpu', CUDA_DEVICE, cuda_emu.device_param()]

TS = [256, 2048, 4096, 16384]
C = 32  # two blocks of the CPU kernels, one warp of channels on CUDA
# model: the model's w = spatial_decay / T, u = spatial_first / T.
# large-keys: keys of magnitude 10 to 100 next to a tiny w (~1e-6), the
#   case where a rounded running exponent drops w altogether.
# peaked: keys of scale 10 (a peaked softmax) and a stronger decay.
# mixed-lanes: model-like, but one channel of every 16 decays strongly
#   (|w| > 0.25), which sends the CPU kernels down their general path.
CASES = ['model', 'large-keys', 'peaked', 'mixed-lanes']
Y_TOL = 5e-6
GRAD_TOL = 1e-5


def make_case(case, T, seed=0):
    """(w, u, k, v, gy) in float64, rounded to float32 values."""
    g = torch.Generator().manual_seed(seed * 100003 + T)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    w, u = randn(C) / T, randn(C) / T
    k, v = randn(1, T, C), randn(1, T, C)
    if case == 'large-keys':
        w = randn(C) * 1e-6
        magnitude = 10 + 90 * torch.rand(1, T, C, generator=g,
                                         dtype=torch.float64)
        k = torch.where(torch.rand(1, T, C, generator=g,
                                   dtype=torch.float64) < 0.5,
                        -magnitude, magnitude)
    elif case == 'peaked':
        w, k = w * 4, k * 10
    elif case == 'mixed-lanes':
        w[::16] = 1.0
    gy = randn(1, T, C)
    return [x.float().double() for x in (w, u, k, v, gy)]


@functools.lru_cache(maxsize=None)
def oracle(case, T):
    """y and (gw, gu, gk, gv) of the float64 CPU kernel."""
    w, u, k, v, gy = make_case(case, T)
    inputs = [x.requires_grad_() for x in (w, u, k, v)]
    y = bi_wkv(*inputs, backend='compiled')
    grads = torch.autograd.grad(y, inputs, gy)
    return y.detach(), tuple(grads)


def rel_err(actual, expected):
    actual = actual.detach().double().cpu()
    assert torch.isfinite(actual).all()
    return ((actual - expected).abs().max() / expected.abs().max()).item()


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('T', TS)
@pytest.mark.parametrize('case', CASES)
def test_float32_matches_float64(case, T, device):
    w, u, k, v, gy = make_case(case, T)
    inputs = [x.float().to(tensor_device(device)).requires_grad_()
              for x in (w, u, k, v)]
    y = run(device, *inputs)
    grads = torch.autograd.grad(y, inputs, gy.float().to(y.device))
    y64, grads64 = oracle(case, T)
    errors = {'y': rel_err(y, y64)}
    errors.update({f'grad {n}': rel_err(a, b)
                   for n, a, b in zip('wukv', grads, grads64)})
    report = ', '.join(f'{n} {e:.2e}' for n, e in errors.items())
    assert errors['y'] <= Y_TOL, report
    assert max(e for n, e in errors.items() if n != 'y') <= GRAD_TOL, report


@pytest.mark.parametrize('case', CASES)
def test_float64_oracle_matches_naive(case):
    """The oracle: the float64 kernel against the O(T^2) numpy formula
    (T = 1024, 0.8 s)."""
    w, u, k, v, _ = make_case(case, 1024)
    y = bi_wkv(w, u, k, v, backend='compiled')
    assert rel_err(y, naive_bi_wkv(w, u, k, v)) <= 1e-12
