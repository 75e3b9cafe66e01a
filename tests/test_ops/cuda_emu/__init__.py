"""The Bi-WKV and Bi-WKV6 CUDA kernels on a CPU emulation of the CUDA
execution model.

:func:`load` compiles ``cuda_ops/bi_wkv/cuda/bi_wkv_cuda.cu`` and
``cuda_ops/bi_wkv6/cuda/bi_wkv6_cuda.cu`` -- the sources nvcc builds, host
code included -- with
the host C++ compiler against ``cuda_emu.h`` (what is emulated and checked
is described there) and returns the extension module. The build is cached
in ``$MMVRWKV_CACHE/cuda_emu`` (default ``~/.cache/mmvrwkv/cuda_emu``) under
a hash of every file it reads, the compiler, torch and Python, so only the
first run pays for it.

The emulated ``forward_cuda``/``backward_cuda`` take CPU tensors. Tests use
the device name ``'cuda-emu'`` for them: :func:`tensor_device` maps it to the
torch device, :func:`run` runs Bi-WKV (with autograd) on a test device.
``bi_wkv6_forward_cuda``/``bi_wkv6_backward_cuda`` are Bi-WKV6's, and
:func:`bi_wkv6` runs them with autograd.
"""
import contextlib
import glob
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
OPS = os.path.join(ROOT, 'cuda_ops')
KERNEL = os.path.join(OPS, 'bi_wkv', 'cuda', 'bi_wkv_cuda.cu')
KERNEL6 = os.path.join(OPS, 'bi_wkv6', 'cuda', 'bi_wkv6_cuda.cu')
# every .cu the extension builds
KERNELS = sorted(glob.glob(os.path.join(OPS, '*', 'cuda', '*.cu')))
# the headers they include: the shared ones and each operator's
KERNEL_INCLUDES = [os.path.join(OPS, d) for d in ('common', 'bi_wkv',
                                                  'bi_wkv6')]
BINDING = os.path.join(HERE, 'bi_wkv_emu.cpp')
# Sources whose __launch_bounds__ the emulator enforces.
KERNEL_SOURCES = KERNELS + [os.path.join(HERE, 'selftest_kernels.cu')]
CFLAGS = ['-O2', '-std=c++20', '-DBIWKV_CUDA_EMU', '-DWITH_CUDA']
DEVICE = 'cuda-emu'
ORDERS = ('ascending', 'descending', 'shuffled')

SUPPORTED = sys.platform.startswith('linux') and bool(
    shutil.which(os.environ.get('CXX', 'c++')))
WHY_UNSUPPORTED = 'the CUDA emulator needs Linux (ucontext) and a C++ compiler'

KEEP_BUILDS = 8  # newest build directories kept in the cache

_module = None
_error = None


def _compiler_id():
    cxx = os.environ.get('CXX', 'c++')
    try:
        out = subprocess.run([cxx, '--version'], capture_output=True,
                             text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        out = ''
    return f'{cxx} {out.splitlines()[0] if out else "?"}'


def _sources():
    patterns = [os.path.join(HERE, '*.h'), os.path.join(HERE, '*.cpp'),
                os.path.join(HERE, '*.cu'),
                os.path.join(HERE, 'include', '**', '*.h'),
                *(os.path.join(d, '*.h') for d in KERNEL_INCLUDES)]
    files = list(KERNELS)
    for pattern in patterns:
        files += glob.glob(pattern, recursive=True)
    return sorted(set(files))


_BOUND = re.compile(
    r'__launch_bounds__\s*\(((?:[^()]|\([^()]*\))*)\)\s*(\w+)\s*\(')


def _top_level_args(expr):
    args, depth, cur = [], 0, ''
    for ch in expr:
        if ch == ',' and depth == 0:
            args.append(cur.strip())
            cur = ''
            continue
        if ch in '([':
            depth += 1
        elif ch in ')]':
            depth -= 1
        cur += ch
    args.append(cur.strip())
    return args


def launch_bounds(paths=KERNEL_SOURCES):
    """{kernel name: max-threads expression} of the ``__launch_bounds__``
    in ``paths`` (comments stripped)."""
    found = {}
    for path in paths:
        with open(path) as f:
            text = f.read()
        text = re.sub(r'//[^\n]*|/\*.*?\*/', '', text, flags=re.S)
        for expr, name in _BOUND.findall(text):
            if name in found:
                raise RuntimeError(f'cuda_emu: two kernels named {name}')
            found[name] = _top_level_args(expr)[0]
    return found


def cache_dir():
    base = os.environ.get('MMVRWKV_CACHE') or os.path.join(
        os.path.expanduser('~'), '.cache', 'mmvrwkv')
    return os.path.join(base, 'cuda_emu')


def build_key():
    h = hashlib.sha256()
    for path in _sources():
        h.update(os.path.relpath(path, ROOT).encode() + b'\0')
        with open(path, 'rb') as f:
            h.update(f.read() + b'\0')
    h.update(' '.join([torch.__version__, sys.version, platform.machine(),
                       _compiler_id()] + CFLAGS).encode())
    return h.hexdigest()[:16]


def _prune(keep):
    builds = sorted(glob.glob(os.path.join(cache_dir(), '*', '')),
                    key=os.path.getmtime, reverse=True)
    for path in builds[keep:]:
        shutil.rmtree(path, ignore_errors=True)


def load():
    """Build (or reuse) and import the emulated kernels' extension. A
    failed build is reported again on later calls, not retried."""
    global _module, _error
    if _module is not None:
        return _module
    if _error is not None:
        raise RuntimeError(f'cuda_emu: the build failed: {_error}')
    if not SUPPORTED:
        raise RuntimeError(WHY_UNSUPPORTED)
    try:
        _module = _build()
    except Exception as e:
        _error = e
        raise
    _prune(KEEP_BUILDS)
    return _module


def _build():
    from torch.utils.cpp_extension import load as load_extension
    key = build_key()
    build = os.path.join(cache_dir(), key)
    os.makedirs(build, exist_ok=True)
    bounds = ''.join(f'CUDA_EMU_LAUNCH_BOUND({name}, {expr})\n'
                     for name, expr in launch_bounds().items())
    inc = os.path.join(build, 'cuda_emu_bounds.inc')
    if not os.path.exists(inc) or open(inc).read() != bounds:
        tmp = f'{inc}.{os.getpid()}'
        with open(tmp, 'w') as f:
            f.write(bounds)
        os.replace(tmp, inc)
    os.utime(build)  # most recently used
    return load_extension(
        name=f'bi_wkv_cuda_emu_{key}',
        sources=[BINDING],
        extra_cflags=CFLAGS,
        extra_include_paths=[os.path.join(HERE, 'include'), HERE,
                             *KERNEL_INCLUDES,
                             *{os.path.dirname(k) for k in KERNELS}, build],
        build_directory=build,
        verbose=False)


@contextlib.contextmanager
def schedule(order='ascending', seed=0):
    """Run the emulated launches inside with threads (between barriers) and
    blocks in ``order``: 'ascending', 'descending' or 'shuffled' (seeded)."""
    mod = load()
    mod.set_schedule(order, seed)
    try:
        yield
    finally:
        mod.set_schedule('ascending', 0)


class EmulatedBiWKV(torch.autograd.Function):
    """BiWKVFunction of mmvrwkv.ops with the emulated CUDA kernels."""

    @staticmethod
    def forward(ctx, w, u, k, v):
        acc = torch.float64 if k.dtype == torch.float64 else torch.float32
        ctx.w_dtype, ctx.u_dtype = w.dtype, u.dtype
        w_ = w.detach().to(acc).contiguous()
        u_ = u.detach().to(acc).contiguous()
        k, v = k.detach().contiguous(), v.detach().contiguous()
        ctx.save_for_backward(w_, u_, k, v)
        return load().forward(w_, u_, k, v)

    @staticmethod
    def backward(ctx, gy):
        w_, u_, k, v = ctx.saved_tensors
        gw, gu, gk, gv = load().backward(w_, u_, k, v,
                                         gy.to(k.dtype).contiguous())
        return gw.to(ctx.w_dtype), gu.to(ctx.u_dtype), gk, gv


def bi_wkv(w, u, k, v):
    """Bi-WKV through the emulated CUDA kernels (CPU tensors)."""
    for x in (w, u, k, v):
        if x.device.type != 'cpu':
            raise ValueError('cuda_emu.bi_wkv takes CPU tensors')
    return EmulatedBiWKV.apply(w, u, k, v)


class EmulatedBiWKV6(torch.autograd.Function):
    """Bi-WKV6 through the emulated ``bi_wkv6::forward_cuda`` /
    ``backward_cuda``: y in the accumulation dtype, gradients in the
    inputs' dtypes (as the torch.ops.mmvrwkv.bi_wkv6 ops)."""

    @staticmethod
    def forward(ctx, r, k, v, w, u):
        acc = torch.float64 if r.dtype == torch.float64 else torch.float32
        ctx.u_dtype = u.dtype
        r, k, v, w = (x.detach().contiguous() for x in (r, k, v, w))
        u_ = u.detach().to(acc).contiguous()
        ctx.save_for_backward(r, k, v, w, u_)
        return load().bi_wkv6_forward_cuda(r, k, v, w, u_)

    @staticmethod
    def backward(ctx, gy):
        r, k, v, w, u_ = ctx.saved_tensors
        gr, gk, gv, gw, gu = load().bi_wkv6_backward_cuda(
            r, k, v, w, u_, gy.to(u_.dtype).contiguous())
        return gr, gk, gv, gw, gu.to(ctx.u_dtype)


def bi_wkv6(r, k, v, w, u):
    """Bi-WKV6 through the emulated CUDA kernels (CPU tensors)."""
    for x in (r, k, v, w, u):
        if x.device.type != 'cpu':
            raise ValueError('cuda_emu.bi_wkv6 takes CPU tensors')
    return EmulatedBiWKV6.apply(r, k, v, w, u)


def tensor_device(device):
    """The torch device of a test device ('cuda-emu' runs on the CPU)."""
    return 'cpu' if device == DEVICE else device


def run(device, w, u, k, v, backend='compiled'):
    """Bi-WKV on a test device: mmvrwkv's ``bi_wkv(..., backend)`` for
    'cpu'/'cuda', the emulated CUDA kernels for 'cuda-emu'."""
    if device == DEVICE:
        return bi_wkv(w, u, k, v)
    from mmvrwkv.ops import bi_wkv as mmvrwkv_bi_wkv
    return mmvrwkv_bi_wkv(w, u, k, v, backend=backend)


def device_param():
    """The 'cuda-emu' entry of a test's DEVICES."""
    return pytest.param(DEVICE, marks=pytest.mark.skipif(
        not SUPPORTED, reason=WHY_UNSUPPORTED))


# --- Emulated device properties (Bi-WKV grid sizing, test_cuda_grid.py) ---

H100_SMS = 132  # the emulated device's SM count by default (H100 SXM, H200)


@contextlib.contextmanager
def sm_count(n):
    """Run the emulated launches inside on a device of ``n`` SMs (launchers
    that size their grids by the SM count read it)."""
    mod = load()
    old = mod.sm_count()
    mod.set_sm_count(n)
    try:
        yield
    finally:
        mod.set_sm_count(old)
