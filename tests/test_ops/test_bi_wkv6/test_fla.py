"""The 'fla' Bi-WKV6 backend (flash-linear-attention's RWKV-6 kernels,
``mmvrwkv/ops/bi_wkv6/fla.py``) against the float64 reference: y and every
gradient, every dtype, odd T, several heads, B > 1, the extreme inputs.

Every run, without a GPU: fla's Triton kernels run in Triton's interpreter
on CPU tensors. TRITON_INTERPRET=1 must be set before Triton is imported,
so they run in one child process (this module run with ``python -m``,
:func:`main`), which measures every case of INTERPRETER_CASES and prints
the errors as JSON; the tests below compare them with the tolerances. Only
``fused_recurrent_rwkv6`` runs in the interpreter (fla 0.6.0).

On a GPU (tools/gpu_check.sh): both kernels on CUDA tensors, and
``python -m tests.test_ops.test_bi_wkv6.test_fla --device cuda`` prints
the errors of every case in both modes.
"""
import argparse
import importlib
import importlib.util
import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from mmvrwkv.ops import BI_WKV6_BACKENDS, bi_wkv6
from ..helpers import (BI_WKV6_EXTREMES, BI_WKV6_TOL, assert_rel_close,
                       bi_wkv6_inputs)

# mmvrwkv.ops exports the function bi_wkv6, which hides the subpackage
fla_backend = importlib.import_module('mmvrwkv.ops.bi_wkv6.fla')

HAS_FLA = importlib.util.find_spec('fla') is not None
needs_fla = pytest.mark.skipif(
    not HAS_FLA, reason='flash-linear-attention is not installed '
    '(pip install -e .[fla])')
needs_cuda = pytest.mark.skipif(
    not (HAS_FLA and torch.cuda.is_available()),
    reason='needs a GPU and flash-linear-attention')
ROOT = Path(__file__).resolve().parents[3]
CHILD = 'tests.test_ops.test_bi_wkv6.test_fla'  # this module, run by -m
CHILD_TIMEOUT_S = 600
DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16,
          'fp16': torch.float16, 'fp64': torch.float64}
GRADS = ('gr', 'gk', 'gv', 'gw', 'gu')


def _case(dtype, B, T, H, N, extreme=None, mode='fused_recurrent'):
    name = f'{mode or "auto"}-{dtype}-B{B}-T{T}-H{H}-N{N}'
    if extreme:
        name += f'-{extreme}'
    return name, dict(dtype=dtype, shape=(B, T, H, N), extreme=extreme,
                      mode=mode)


# What the interpreter measures (fused_recurrent_rwkv6): odd T, one and
# several heads, B = 2, VRWKV6's N = 64 and other head sizes (12: not a
# power of 2), every dtype, every extreme; the kernel chosen by T on CPU
# tensors (T = 65: still the recurrent one). Small: the interpreter runs a
# Triton program as numpy operations, one per token step (about 2 s per
# case).
INTERPRETER_CASES = dict([
    _case('fp32', 2, 15, 2, 16),
    _case('fp32', 1, 33, 3, 16),
    _case('fp32', 1, 1, 1, 8),
    _case('fp32', 1, 2, 1, 8),
    _case('fp32', 1, 20, 1, 64),
    _case('fp32', 1, 9, 2, 12),
    _case('fp32', 1, 64, 1, 8, mode=None),
    _case('fp32', 1, 65, 1, 8, mode=None),
    _case('bf16', 2, 15, 2, 16),
    _case('bf16', 1, 33, 3, 16),
    _case('fp16', 2, 15, 2, 16),
    _case('fp16', 1, 33, 3, 16),
    _case('fp64', 2, 15, 2, 16),
] + [
    _case(dtype, 2, 33, 2, 16, extreme=extreme)
    for extreme in BI_WKV6_EXTREMES for dtype in ('fp32', 'bf16', 'fp16')
])
# chunk_rwkv6 in the interpreter: fails in fla 0.6.0 (xfail below)
CHUNK_CASE = dict([_case('fp32', 1, 20, 1, 16, mode='chunk')])
ENTRY_POINT = "bi_wkv6(backend='fla')"

# On a GPU: both kernels, longer sequences (several chunks of 64, a
# partial last one), VRWKV6's head size; the kernels see float32 whatever
# the dtype, so bf16 and fp16 once each.
CUDA_CASES = dict([
    _case(dtype, B, T, H, 64, mode=mode)
    for mode in ('fused_recurrent', 'chunk')
    for dtype, B, T, H in (('fp32', 2, 15, 2), ('fp32', 1, 65, 3),
                           ('fp32', 2, 197, 2), ('fp32', 1, 500, 1),
                           ('bf16', 2, 197, 2), ('fp16', 2, 197, 2))
] + [
    _case('fp32', 2, 150, 2, 64, extreme=extreme, mode=mode)
    for mode in ('fused_recurrent', 'chunk') for extreme in BI_WKV6_EXTREMES
])

# fla's chunked kernel multiplies on tensor cores (TF32 on Ampere and
# later: 10-bit mantissas, about 1e-3 per product) whatever the dtype, and
# its gw is a difference of sums within a chunk, which amplifies that
# (fused_recurrent's gw error is 30x its y error). Estimates, not yet
# measured: the first GPU run prints the errors (``python -m`` this module
# ``--device cuda``) to set them. The fused kernel computes in float32
# like the other backends and gets BI_WKV6_TOL.
CHUNK_TOL = {'y': 1e-2, 'gr': 1e-2, 'gk': 1e-2, 'gv': 1e-2, 'gw': 5e-2,
             'gu': 1e-2}


def tolerances(dtype, mode, T):
    """Relative error allowed for y and each gradient, for inputs of
    ``dtype``: everything is computed in float32 (float64 inputs too), so
    y gets float32's tolerance whatever the dtype, and each gradient its
    dtype's rounding (u is float32: float32's). fused_recurrent_rwkv6's
    gw is a difference of sums over all the tokens after each one: its
    error grows as 1e-6 sqrt(T) (measured in fp32 up to T = 500), which
    reaches float32's tolerance, 2e-5, at T = 400."""
    fp32 = BI_WKV6_TOL[torch.float32]
    grad = fp32 if dtype == torch.float64 else BI_WKV6_TOL[dtype]
    tol = dict(y=fp32, gu=fp32, **{name: grad for name in GRADS[:4]})
    if mode == 'chunk':
        tol = {name: max(tol[name], CHUNK_TOL[name]) for name in tol}
    else:
        tol['gw'] = max(tol['gw'], 3e-6 * math.sqrt(T))
    return tol


def run_case(case, device):
    """The backend's errors against the reference on one case's inputs on
    ``device`` (a dict from fla.errors_against_reference)."""
    extreme = BI_WKV6_EXTREMES[case['extreme']] if case['extreme'] else {}
    inputs = bi_wkv6_inputs(*case['shape'], dtype=DTYPES[case['dtype']],
                            device=device, **extreme)
    g = torch.Generator().manual_seed(case['shape'][1])
    gy = torch.randn(inputs[0].shape, generator=g, dtype=torch.float64)
    return fla_backend.errors_against_reference(*inputs, gy,
                                                mode=case['mode'])


def check_errors(errors, case, device):
    """The contract: y in the accumulation dtype, each gradient in its
    input's dtype, and every error within its tolerance."""
    dtype = DTYPES[case['dtype']]
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    T = case['shape'][1]
    mode = case['mode'] or fla_backend.choose_mode(T, device)
    assert errors['y dtype'] == str(acc)
    assert errors['gu dtype'] == str(acc)
    for name in GRADS[:4]:
        assert errors[f'{name} dtype'] == str(dtype), name
    bad = {name: errors[name]
           for name, tol in tolerances(dtype, mode, T).items()
           if not errors[name] <= tol}
    assert not bad, f'relative errors above tolerance: {bad}'
    # the first and the last token's decays never matter
    assert errors['gw edge'] == 0


def _one_config_autotune():
    """Make every ``triton.autotune`` keep its first configuration only.

    Triton's interpreter cannot time kernels: an autotuner with several
    configurations asks the GPU driver for a benchmarker ('0 active
    drivers') and would run each configuration once more. With one
    configuration the autotuner runs it without timing. fla decorates its
    kernels when its modules are imported (fla's own
    ``configure_fla_cache_autotune`` replaces triton.autotune the same
    way), so this runs before, in the interpreter's child process only.
    The first configuration is as valid as any: only speed differs.
    """
    import triton
    assert 'fla' not in sys.modules, 'fla was imported before the patch'
    autotune = triton.autotune

    def first_config(configs, *args, **kwargs):
        return autotune(configs[:1], *args, **kwargs)

    triton.autotune = first_config


def main(argv=None):
    """Measure every case of one device and print {case: errors} as JSON
    (a failed case: {'failed': message}). In the interpreter (device
    'cpu', TRITON_INTERPRET=1): INTERPRETER_CASES, CHUNK_CASE and the
    entry point; on 'cuda': CUDA_CASES."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument('--device', default='cpu', choices=('cpu', 'cuda'))
    device = parser.parse_args(argv).device
    if device == 'cpu':
        if not fla_backend.interpreting():
            parser.error('the cpu device needs TRITON_INTERPRET=1')
        _one_config_autotune()
        # small tensors: one thread, no OpenMP spinning on shared cores
        torch.set_num_threads(1)
        cases = {**INTERPRETER_CASES, **CHUNK_CASE}
    else:
        cases = CUDA_CASES
    # fla warns at import that Triton has no GPU driver (the interpreter)
    warnings.filterwarnings('ignore', 'Triton is not supported')
    results = {}
    for name, case in cases.items():
        try:
            results[name] = run_case(case, device)
        except Exception as error:  # one case's failure, reported as such
            results[name] = {'failed': f'{type(error).__name__}: {error}'}
        print(name, results[name], file=sys.stderr, flush=True)
    if device == 'cpu':  # the entry point reaches this backend
        inputs = bi_wkv6_inputs(2, 9, 2, 8)
        diff = bi_wkv6(*inputs, backend='fla') - fla_backend.bi_wkv6_fla(
            *inputs, mode='fused_recurrent')
        results[ENTRY_POINT] = {'diff': diff.abs().max().item()}
    print(json.dumps(results))


@pytest.fixture(scope='module')
def interpreter_results():
    """The child process's measurements: {case: errors}."""
    env = dict(os.environ, TRITON_INTERPRET='1')
    try:
        child = subprocess.run(
            [sys.executable, '-m', CHILD], cwd=ROOT, env=env,
            capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f'the interpreter run took over {CHILD_TIMEOUT_S} s: '
                    f'{error.stderr}')
    assert child.returncode == 0, child.stderr[-5000:]
    return json.loads(child.stdout.strip().splitlines()[-1])


@needs_fla
@pytest.mark.parametrize('name', list(INTERPRETER_CASES))
def test_interpreter_matches_reference(name, interpreter_results):
    errors = interpreter_results[name]
    assert 'failed' not in errors, errors.get('failed')
    check_errors(errors, INTERPRETER_CASES[name], 'cpu')


@needs_fla
def test_interpreter_entry_point(interpreter_results):
    """bi_wkv6(backend='fla') runs this backend on CPU tensors in the
    interpreter (fused_recurrent_rwkv6 for T <= 64)."""
    assert interpreter_results[ENTRY_POINT] == {'diff': 0.0}


@needs_fla
def test_interpreter_chunk(interpreter_results):
    """chunk_rwkv6 does not run in Triton's interpreter in fla 0.6.0
    (``i_t.to(tl.int64)`` on the Python int of a ``range`` loop in
    fla/ops/common/chunk_h.py); once it does, it is checked here too."""
    name, case = next(iter(CHUNK_CASE.items()))
    errors = interpreter_results[name]
    if "'int' object has no attribute 'to'" in errors.get('failed', ''):
        pytest.xfail("fla's chunk_rwkv6 fails in Triton's interpreter: "
                     + errors['failed'])
    assert 'failed' not in errors, errors.get('failed')
    check_errors(errors, case, 'cpu')


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize('name', list(CUDA_CASES))
def test_cuda_matches_reference(name):
    case = CUDA_CASES[name]
    check_errors(run_case(case, 'cuda'), case, 'cuda')


@pytest.mark.gpu
@needs_cuda
def test_cuda_entry_point():
    """bi_wkv6(backend='fla') runs fla's kernel chosen by T."""
    r, k, v, w, u = bi_wkv6_inputs(2, 100, 2, 64, device='cuda')
    y = bi_wkv6(r, k, v, w, u, backend='fla')
    assert_rel_close(y, fla_backend.bi_wkv6_fla(r, k, v, w, u, mode='chunk'),
                     1e-6)


def test_imported_lazily():
    """mmvrwkv.ops imports torch alone: fla only when the backend runs
    (asking where it runs only looks for the package)."""
    code = ('import sys\n'
            'from mmvrwkv.ops import bi_wkv6_backends\n'
            "bi_wkv6_backends('cuda')\n"
            "assert 'fla' not in sys.modules\n"
            "assert 'triton' not in sys.modules\n")
    subprocess.run([sys.executable, '-c', code], check=True, cwd=ROOT)


def test_never_chosen_by_auto():
    assert 'fla' not in BI_WKV6_BACKENDS.preferred
    assert 'fla' not in BI_WKV6_BACKENDS.available('cpu')


@needs_fla
def test_cpu_without_interpreter(monkeypatch):
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    inputs = bi_wkv6_inputs(1, 4, 1, 8)
    with pytest.raises(RuntimeError, match='fla backend requested but fla '
                       "runs on CUDA tensors.*TRITON_INTERPRET=1.*'chunked'"):
        bi_wkv6(*inputs, backend='fla')


def test_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, 'fla', None)  # find_spec: None
    assert 'fla' not in BI_WKV6_BACKENDS.available('cuda')
    with pytest.raises(RuntimeError,
                       match=r'not installed: `pip install -e \.\[fla\]`'):
        bi_wkv6(*bi_wkv6_inputs(1, 4, 1, 8), backend='fla')


def test_broken_install(monkeypatch):
    """fla present but not importable (e.g. a Triton it does not support):
    the error names the package and the fix."""
    monkeypatch.setitem(sys.modules, 'fla.ops.rwkv6', None)  # no import
    monkeypatch.setattr(fla_backend, '_kernels', {})
    monkeypatch.setattr(fla_backend, 'fla_unsupported', lambda *a: None)
    with pytest.raises(RuntimeError, match=r'does not import.*pip install'):
        fla_backend.bi_wkv6_fla(*bi_wkv6_inputs(1, 4, 1, 8))


@needs_fla
def test_bad_mode(monkeypatch):
    monkeypatch.setenv('TRITON_INTERPRET', '1')
    with pytest.raises(ValueError, match="mode 'scan' is not one of: "
                       'chunk, fused_recurrent'):
        fla_backend.bi_wkv6_fla(*bi_wkv6_inputs(1, 4, 1, 8), mode='scan')


def test_choose_mode():
    """The recurrent kernel up to 64 tokens, as fla's own layers, and on
    CPU tensors (the interpreter)."""
    assert fla_backend.choose_mode(1) == 'fused_recurrent'
    assert fla_backend.choose_mode(64, 'cuda') == 'fused_recurrent'
    assert fla_backend.choose_mode(65, torch.device('cuda', 0)) == 'chunk'
    assert fla_backend.choose_mode(4096, 'cpu') == 'fused_recurrent'


def test_log_decay():
    """-exp(w) clamped at exp(-30), exactly 0 (and no gradient) at the
    first and the last token, finite gradients where exp(w) overflows."""
    w = torch.tensor([0., 100., -20., 3., 1e4], requires_grad=True)
    g = fla_backend._log_decay(w.view(1, 5, 1, 1)).flatten()
    assert g.dtype == torch.float32
    want = torch.tensor([0., -30., -math.exp(-20.), -math.exp(3.), 0.])
    torch.testing.assert_close(g, want)
    gw, = torch.autograd.grad(g.sum(), w)
    torch.testing.assert_close(gw, want * torch.tensor([0, 0, 1, 1, 0]))
    assert gw[0] == 0 and gw[1] == 0 and gw[4] == 0


if __name__ == '__main__':
    main()
