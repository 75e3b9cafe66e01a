"""Resource-usage gate of the CUDA kernels, without a GPU.

For every architecture the extension is built for, every instantiation of
every kernel in cuda_ops/*/cuda/*.cu (Bi-WKV and Bi-WKV6) must fit its largest
launch: registers (65536 per SM, allocated per warp in units of 256, at most
255 a thread) for the largest block the launcher makes, no stack frame
(spilled registers) beyond the few accepted in ACCEPTED_STACK, and static
plus dynamic shared memory within the 48 KiB a launch gets without opting
in. Block sizes and dynamic shared memory come from the launcher itself,
run on the CUDA emulator (tests/test_ops/cuda_emu, split launches
included); register and shared-memory usage
from ``cuobjdump --dump-resource-usage`` of the built mmvrwkv/_ext*.so when
it holds CUDA code built from the current sources, else from
``nvcc --resource-usage`` (a few minutes of CPU per architecture). Skipped when
neither a CUDA build of the extension with cuobjdump nor nvcc is at hand.
"""
import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sysconfig
import tempfile

import pytest
import torch

from . import cuda_emu
from .helpers import bi_wkv6_inputs, make_inputs

ROOT = cuda_emu.ROOT
CUDA_HOME = os.environ.get('CUDA_HOME') or os.environ.get(
    'CUDA_PATH') or '/usr/local/cuda'
REGS_PER_SM = 65536
REG_UNIT = 256  # registers are allocated per warp in units of 256
MAX_REGS_PER_THREAD = 255
SMEM_PER_LAUNCH = 48 * 1024  # without cudaFuncSetAttribute opt-in
# cuobjdump counts the 1 KiB of shared memory the system reserves per block
# on sm_90 and later in SHARED (ptxas does not); it is not part of the 48 KiB
RESERVED_SMEM = 1024

pytestmark = pytest.mark.skipif(not cuda_emu.SUPPORTED,
                                reason=cuda_emu.WHY_UNSUPPORTED)


def find_tool(name):
    """A CUDA tool from $CUDA_HOME/bin, the PATH, or (cuobjdump) the copy
    that triton, a torch dependency, ships."""
    for path in (os.path.join(CUDA_HOME, 'bin', name), shutil.which(name)):
        if path and os.access(path, os.X_OK):
            return path
    spec = importlib.util.find_spec('triton')
    if spec is not None and spec.origin:
        path = os.path.join(os.path.dirname(spec.origin), 'backends',
                            'nvidia', 'bin', name)
        if os.access(path, os.X_OK):
            return path
    return None


def configured_archs():
    """TORCH_CUDA_ARCH_LIST, else tools/setup_env.sh's default, as sm
    numbers ('8.0;9.0+PTX' -> ['80', '90'])."""
    spec = os.environ.get('TORCH_CUDA_ARCH_LIST')
    if not spec:
        with open(os.path.join(ROOT, 'tools', 'setup_env.sh')) as f:
            spec = re.search(r'TORCH_CUDA_ARCH_LIST:-"([^"]+)"',
                             f.read()).group(1)
    archs = []
    for item in re.split(r'[;\s]+', spec.strip()):
        m = re.fullmatch(r'(\d+)\.(\d+)([a-z]?)(\+PTX)?', item)
        if m is None:
            pytest.skip(f'cannot read the architecture {item!r} of '
                        f'TORCH_CUDA_ARCH_LIST={spec!r}')
        archs.append(m.group(1) + m.group(2) + m.group(3))
    return archs


def _kernel_sources_mtime():
    files = cuda_emu.KERNELS + [
        f for d in cuda_emu.KERNEL_INCLUDES
        for f in glob.glob(os.path.join(d, '*.h'))]
    return max(os.path.getmtime(f) for f in files)


def parse_cuobjdump(text):
    """{arch: {function: {'REG': n, 'STACK': n, 'SHARED': n, 'LOCAL': n}}}
    from ``cuobjdump --dump-resource-usage``."""
    usage, arch, func = {}, None, None
    for line in text.splitlines():
        m = re.search(r'arch = sm_(\w+)', line)
        if m:
            arch = m.group(1)
            continue
        m = re.match(r'\s*Function (\S+?):?\s*$', line)
        if m:
            func = m.group(1)
            continue
        if func and 'REG:' in line:
            usage.setdefault(arch, {})[func] = {
                key: int(val)
                for key, val in re.findall(r'(\w+):(\d+)', line)
                if key in ('REG', 'STACK', 'SHARED', 'LOCAL')}
            func = None
    return usage


def parse_ptxas(text):
    """The same from ``nvcc --resource-usage`` (ptxas -v) output."""
    usage, cur = {}, None
    for line in text.splitlines():
        m = re.search(r"(?:Compiling entry function|Function properties "
                      r"for) '?(\w+)'?(?: for 'sm_(\w+)')?", line)
        if m and m.group(2):
            cur = usage.setdefault(m.group(2), {}).setdefault(
                m.group(1), {'REG': 0, 'STACK': 0, 'SHARED': 0, 'LOCAL': 0})
            continue
        if cur is None:
            continue
        m = re.search(r'(\d+) bytes stack frame', line)
        if m:
            cur['STACK'] = int(m.group(1))
        m = re.search(r'Used (\d+) registers', line)
        if m:
            cur['REG'] = int(m.group(1))
            m = re.search(r'(\d+) bytes smem', line)
            cur['SHARED'] = int(m.group(1)) if m else 0
            m = re.search(r'(\d+) bytes lmem', line)
            cur['LOCAL'] = int(m.group(1)) if m else 0
    return usage


def usage_from_extension():
    """Resource usage from the built extension, or None when it holds no
    CUDA code from the current sources (or cuobjdump is missing)."""
    cuobjdump = find_tool('cuobjdump')
    sos = glob.glob(os.path.join(ROOT, 'mmvrwkv', '_ext*.so'))
    if cuobjdump is None or len(sos) != 1:
        return None
    if os.path.getmtime(sos[0]) < _kernel_sources_mtime():
        return None  # built before the last edit of the kernels
    proc = subprocess.run([cuobjdump, '--dump-resource-usage', sos[0]],
                          capture_output=True, text=True, timeout=300)
    usage = parse_cuobjdump(proc.stdout) if proc.returncode == 0 else {}
    if not usage:
        return None
    for arch, funcs in usage.items():
        if int(re.match(r'\d+', arch).group()) >= 90:
            for u in funcs.values():
                u['SHARED'] = max(0, u['SHARED'] - RESERVED_SMEM)
    so = os.path.relpath(sos[0], ROOT)
    return f'cuobjdump --dump-resource-usage {so}', usage


def usage_from_nvcc(archs):
    nvcc = find_tool('nvcc')
    if nvcc is None:
        return None
    from torch.utils.cpp_extension import COMMON_NVCC_FLAGS, include_paths
    flags = ['-O3', '-std=c++20', '--expt-relaxed-constexpr', '-DWITH_CUDA',
             '-DTORCH_EXTENSION_NAME=_ext', '-DTORCH_API_INCLUDE_EXTENSION_H',
             '--resource-usage', '-cubin'] + list(COMMON_NVCC_FLAGS)
    incs = cuda_emu.KERNEL_INCLUDES + include_paths() + [
        sysconfig.get_paths()['include']]
    flags += [f'-I{p}' for p in incs]
    usage, logs = {}, []
    jobs = [(a, i, src) for a in archs
            for i, src in enumerate(cuda_emu.KERNELS)]
    with tempfile.TemporaryDirectory() as tmp:
        procs = [subprocess.Popen(
            [nvcc, *flags, f'-gencode=arch=compute_{a},code=sm_{a}', '-o',
             os.path.join(tmp, f'sm_{a}_{i}.cubin'), src],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for a, i, src in jobs]
        for (a, _, src), proc in zip(jobs, procs):
            out, _ = proc.communicate(timeout=1800)
            logs.append(out)
            assert proc.returncode == 0, \
                f'nvcc failed for sm_{a} ({src}):\n{out}'
            for arch, funcs in parse_ptxas(out).items():
                usage.setdefault(arch, {}).update(funcs)
    return f'nvcc --resource-usage ({", ".join(archs)})', usage


@pytest.fixture(scope='module')
def resource_usage():
    found = usage_from_extension()
    if found is None:
        found = usage_from_nvcc(configured_archs())
    if found is None:
        pytest.skip('needs nvcc, or an extension built with CUDA kernels '
                    'and cuobjdump')
    return found


@pytest.fixture(scope='module')
def launches():
    """Largest block and dynamic shared memory per kernel, from the
    launcher run on the emulator at its largest configuration (16 chunks)
    in every dtype."""
    emu = cuda_emu.load()
    emu.reset_records()
    for dtype in (torch.float16, torch.bfloat16, torch.float32,
                  torch.float64):
        # Bi-WKV: 16 chunks, in one segment (1 SM) and in two segments
        # of 512 tokens (2 SMs: the split launch's kernels)
        for sms, T in ((1, 512), (2, 1024)):
            w, u, k, v = make_inputs(1, T, 2, dtype=dtype)
            with cuda_emu.sm_count(sms):
                emu.forward(w, u, k, v)
                emu.backward(w, u, k, v, torch.ones_like(k))
        # Bi-WKV6: VRWKV6's head size, the largest block and shared memory
        r, k, v, w, u = bi_wkv6_inputs(1, 40, 2, 64, dtype=dtype)
        emu.bi_wkv6_forward_cuda(r, k, v, w, u)
        emu.bi_wkv6_backward_cuda(r, k, v, w, u,
                                  torch.ones(r.shape, dtype=u.dtype))
        # and the split launches (4 segments of 64 tokens): the summary
        # kernel of both passes (k v^T; k v^T and r gy^T), the split forward
        # and backward kernels
        split = bi_wkv6_inputs(1, 256, 1, 64, dtype=dtype)
        with cuda_emu.sm_count(132):
            emu.bi_wkv6_forward_cuda(*split)
            emu.bi_wkv6_backward_cuda(
                *split, torch.ones(split[0].shape, dtype=split[4].dtype))
    records = emu.kernel_records()
    kernels = cuda_emu.launch_bounds(cuda_emu.KERNELS)
    assert set(kernels) <= set(records)
    # the Bi-WKV6 split launches ran: (B x H, segments, pairs)
    assert records['wkv6_summary_kernel']['max_grid'] == (1, 4, 2)
    assert records['wkv6_backward_kernel']['max_grid'][1] == 4
    return {name: records[name] for name in kernels}


# Stack frames (bytes; spilled registers, mostly) accepted per kernel
# instantiation, the larger of sm_80 and sm_90 as nvcc 13 builds them; every
# other instantiation has none. The float64 Bi-WKV6 backward at N = 64 keeps
# a 64-double row of its state, the chunk's 17 pair terms and its pointers
# in 255 registers and spills the rest (344 B on sm_80, 296 B on sm_90 since
# the backward split; 352 B and 320 B before it).
ACCEPTED_STACK = {
    'wkv6_backward_kernel<64, double, double>': 352,
    # 4 B of spill stores, 12 B of loads on sm_80 (none on sm_90)
    'wkv6_forward_kernel<64, float, float>': 8,
    'wkv6_forward_kernel<64, c10::Half, float>': 8,
    'wkv6_forward_kernel<64, c10::BFloat16, float>': 8,
    # sm_80: 8 B of spill stores and loads
    'summary_kernel<bi_wkv::generic::Moments<double>, double, double>': 8,
}


def register_budget(threads):
    warps = -(-threads // 32)
    per_thread = REGS_PER_SM // warps // 32 // 8 * 8
    return min(MAX_REGS_PER_THREAD, per_thread)


CUOBJDUMP_SAMPLE = """
Fatbin elf code:
================
arch = sm_80
code version = [1,8]

Resource usage:
 Common:
  GLOBAL:0
 Function _Z11tiny_kernelPf:
  REG:10 STACK:0 SHARED:256 LOCAL:0 CONSTANT[0]:360 TEXTURE:0 SURFACE:0

Fatbin ptx code:
================
arch = sm_90

Fatbin elf code:
================
arch = sm_90

Resource usage:
 Common:
  GLOBAL:0
 Function _Z11tiny_kernelPf:
  REG:12 STACK:16 SHARED:1280 LOCAL:8 CONSTANT[0]:536 TEXTURE:0 SURFACE:0
"""

PTXAS_SAMPLE = """
ptxas info    : Compiling entry function '_Z11tiny_kernelPf' for 'sm_80'
ptxas info    : Function properties for _Z11tiny_kernelPf
    16 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 40 registers, used 1 barriers, 256 bytes smem
ptxas info    : Compiling entry function '_Z4gridPf' for 'sm_80'
ptxas info    : Function properties for _Z4gridPf
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 8 registers, used 0 barriers, 360 bytes cmem[0]
"""


def test_parsers():
    assert parse_cuobjdump(CUOBJDUMP_SAMPLE) == {
        '80': {'_Z11tiny_kernelPf': dict(REG=10, STACK=0, SHARED=256,
                                         LOCAL=0)},
        '90': {'_Z11tiny_kernelPf': dict(REG=12, STACK=16, SHARED=1280,
                                         LOCAL=8)}}
    assert parse_ptxas(PTXAS_SAMPLE) == {'80': {
        '_Z11tiny_kernelPf': dict(REG=40, STACK=16, SHARED=256, LOCAL=0),
        '_Z4gridPf': dict(REG=8, STACK=0, SHARED=0, LOCAL=0)}}


def test_register_budget_model():
    assert register_budget(512) == 128
    assert register_budget(1024) == 64
    assert register_budget(64) == 255
    assert register_budget(96) == 255 and register_budget(320) == 200


def _instantiation(func, name):
    """'<c10::Half, float>' for a mangled kernel name (c++filt), else the
    mangled template arguments."""
    cxxfilt = shutil.which('c++filt')
    if cxxfilt:
        out = subprocess.run([cxxfilt, func], capture_output=True,
                             text=True).stdout
        m = re.search(re.escape(name) + r'(<[^()]*>)', out)
        if m:
            return m.group(1)
    tag = f'{len(name)}{name}'
    return func[func.index(tag) + len(tag):][:24]


def test_kernels_fit_their_launches(resource_usage, launches):
    source, usage = resource_usage
    lines = [f'resource usage from {source}; shared memory: static + '
             'dynamic (the largest any dtype launches):']
    failures = []
    assert usage, 'no kernels found'
    for arch in sorted(usage):
        for name, rec in sorted(launches.items()):
            tag = f'{len(name)}{name}'
            funcs = {f: u for f, u in usage[arch].items() if tag in f}
            if not funcs:
                failures.append(f'sm_{arch}: no {name}')
            threads, dyn = rec['max_threads'], rec['max_smem']
            budget = register_budget(threads)
            for func, u in sorted(funcs.items()):
                inst = _instantiation(func, name)
                smem = u['SHARED'] + dyn
                stack = ACCEPTED_STACK.get(f'{name}{inst}', 0)
                lines.append(
                    f'  sm_{arch} {name} {inst}: {u["REG"]} regs (budget '
                    f'{budget} at {threads} threads), stack {u["STACK"]} B '
                    f'(accepted {stack}), local {u["LOCAL"]} B, shared '
                    f'{u["SHARED"]} + {dyn} B')
                if u['REG'] > budget:
                    failures.append(f'sm_{arch} {func}: {u["REG"]} registers '
                                    f'> {budget} for {threads} threads')
                if u['STACK'] > stack:
                    failures.append(f'sm_{arch} {name}{inst}: a stack frame '
                                    f'of {u["STACK"]} B > {stack} B accepted '
                                    '(spilled registers)')
                if smem > SMEM_PER_LAUNCH:
                    failures.append(f'sm_{arch} {func}: {smem} bytes of '
                                    f'shared memory > {SMEM_PER_LAUNCH}')
    print('\n'.join(lines))
    assert not failures, '\n'.join(failures + lines)
