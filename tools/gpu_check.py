"""The GPU check, for a short lease of an NVIDIA machine (run it through
``tools/gpu_check.sh``; docs/gpu_check.md says what it covers).

Phases, in order, each under a time limit (seconds, ``PHASES``):

1. ``env``: wheels from ``--wheels`` installed into a folder put on
   PYTHONPATH, then versions (Python, torch, CUDA, Triton, nvcc, driver,
   packages) and the GPU;
2. ``build``: the extension for this GPU's architecture (``FORCE_CUDA=1
   TORCH_CUDA_ARCH_LIST=<capability> MAX_JOBS=<cores> setup.py build_ext
   --inplace``), its time, then which backends run on CUDA;
3. ``tests``: ``pytest tests/test_ops -m gpu`` (JUnit XML, counts per
   operator, skip reasons, failures);
4. ``fla_report``: ``python -m tests.test_ops.test_bi_wkv6.test_fla
   --device cuda``, the 'fla' backend's errors per case against float64;
5. ``sanitizer``: compute-sanitizer's memcheck, racecheck and initcheck on
   a few CUDA tests (``SANITIZER_TESTS``);
6. ``bench_bi_wkv``, ``bench_bi_wkv6``, ``bench_backbone``: the
   benchmarks in ``benchmarks/`` on the GPU.

A phase gets at most its limit, and never so much that the phases after it
could not have their minimum before ``--budget`` runs out; with less than
its own minimum left it is skipped. A phase that reaches its limit is
stopped (SIGINT, then SIGKILL) and recorded as ``cut_short`` with what it
finished. Everything goes to ONE JSON, ``OUT/gpu_check.json`` (rewritten
after every phase), beside ``gpu_check.log`` (every command's output),
``junit.xml``, ``bench_backbone.png`` and ``summary.md``; the summary
table is printed last.

Without a CUDA device, or with ``--dry-run``, each phase runs its CPU
stand-in at tiny sizes (the build only evaluates setup.py; the tests
collect and skip; fla's report runs in Triton's interpreter; the sanitizer
only collects its tests; the benchmarks run on the CPU), which is what
tests/test_tools/test_gpu_check.py runs.
"""
import argparse
import ast
import collections
import datetime
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JSON_NAME = 'gpu_check.json'
LOG_NAME = 'gpu_check.log'
JUNIT_NAME = 'junit.xml'
PLOT_NAME = 'bench_backbone.png'
SUMMARY_NAME = 'summary.md'
DEFAULT_BUDGET_S = 450
DRY_BUDGET_S = 240


@dataclass(frozen=True)
class Phase:
    """A phase's time limits in seconds: at most ``limit``, skipped with
    less than ``minimum`` left; ``dry_limit`` in a dry run."""
    name: str
    limit: float
    minimum: float
    dry_limit: float


PHASES = (
    Phase('env', 60, 10, 60),
    Phase('build', 240, 60, 30),
    Phase('tests', 180, 30, 60),
    Phase('fla_report', 60, 15, 20),
    Phase('sanitizer', 120, 20, 30),
    Phase('bench_bi_wkv', 45, 15, 30),
    Phase('bench_bi_wkv6', 90, 15, 30),
    Phase('bench_backbone', 90, 20, 60),
)
PHASE_NAMES = tuple(p.name for p in PHASES)

# A few CUDA tests for compute-sanitizer: Bi-WKV forward and backward
# (B3-T37-C19) and Bi-WKV6 forward and backward, one unsplit launch
# (B2-T15-H2) and one whose tokens split into segments on a GPU of more
# SMs than its 2 blocks (B1-T500-H2).
SANITIZER_TESTS = (
    'tests/test_ops/test_bi_wkv/test_compiled.py::test_forward_matches_naive',
    'tests/test_ops/test_bi_wkv/test_compiled.py::'
    'test_backward_matches_reference_autograd',
    'tests/test_ops/test_bi_wkv6/test_compiled.py::test_matches_reference',
    '-m', 'gpu', '-k',
    'fp32 and (B3-T37-C19 or B2-T15-H2-N64 or B1-T500-H2-N64)')
SANITIZER_TOOLS = ('memcheck', 'racecheck', 'initcheck')
SANITIZER_EXIT = 86  # compute-sanitizer's exit status when it found errors

# The benchmarks' arguments on a GPU and in a dry run.
OP_TOKENS = ('1024', '2048', '4096', '8192', '16384')
BENCH_ARGS = {
    'bench_bi_wkv': dict(
        gpu=['--device', 'cuda', '--dtype', 'float32', 'bfloat16',
             '--batch', '1', '--channels', '192', '--tokens', *OP_TOKENS,
             '--repeats', '20', '--warmup', '3', '--sdpa-max-tokens',
             '16384', '--reference-max-tokens', '0'],
        dry=['--device', 'cpu', '--dtype', 'float32', 'bfloat16',
             '--batch', '1', '--channels', '64', '--tokens', '64',
             '--repeats', '2', '--sdpa-max-tokens', '64',
             '--reference-max-tokens', '0']),
    'bench_bi_wkv6': dict(
        gpu=['--device', 'cuda', '--dtype', 'float32', 'bfloat16',
             '--backends', 'compiled', 'fla', '--batch', '1', '--channels',
             '192', '--tokens', *OP_TOKENS, '--repeats', '20', '--warmup',
             '3', '--reference-max-tokens', '0'],
        dry=['--device', 'cpu', '--dtype', 'float32', 'bfloat16',
             '--backends', 'compiled', 'fla', '--batch', '1', '--channels',
             '64', '--tokens', '64', '--repeats', '2',
             '--reference-max-tokens', '0']),
    'bench_backbone': dict(
        gpu=['--device', 'cuda', '--in-process', '--models', 'vrwkv_t',
             'vrwkv6_t', 'deit_t', '--sizes', '224', '512', '1024', '1536',
             '2048', '--dtype', 'float32', 'bfloat16', '--repeats', '10',
             '--case-budget', '5'],
        dry=['--device', 'cpu', '--in-process', '--models', 'vrwkv_t',
             'vrwkv6_t', 'deit_t', '--sizes', '64', '--dtype', 'float32',
             'bfloat16', '--repeats', '1', '--case-budget', '0.5']),
}
# the share of a benchmark's limit given as its own --budget (it stops
# starting cases then; the rest is for the case under way)
BENCH_BUDGET_SHARE = 0.7

PACKAGES = ('torch', 'triton', 'numpy', 'pytest', 'einops', 'fla-core',
            'mmengine', 'mmcv', 'mmcv-lite', 'mmpretrain', 'addict', 'yapf',
            'termcolor', 'platformdirs', 'onnx', 'onnxruntime', 'matplotlib',
            'timm')
# Run by the checked Python: versions, the GPU, and whether mmvrwkv's
# models import (mmengine and mmcv from the wheels).
ENV_PROBE = r'''
import importlib.metadata as md, json, os, platform, sys
info = dict(python=sys.version.split()[0], executable=sys.executable,
            platform=platform.platform(), cpu_count=os.cpu_count())
try:
    import torch
    info.update(torch=torch.__version__, torch_cuda=torch.version.cuda,
                cuda_available=torch.cuda.is_available())
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, capability='%d.%d' % (p.major, p.minor),
                    sm_count=p.multi_processor_count,
                    gpu_memory_gb=round(p.total_memory / 2**30, 1))
    from torch.utils.cpp_extension import CUDA_HOME
    info['cuda_home'] = CUDA_HOME
except Exception as error:
    info['torch_error'] = repr(error)
packages = {}
for name in PACKAGES:
    try:
        packages[name] = md.version(name)
    except md.PackageNotFoundError:
        packages[name] = None
info['packages'] = packages
try:
    from mmvrwkv.models import VRWKV, VRWKV6
    info['mmvrwkv_models'] = 'import ok'
except Exception as error:
    info['mmvrwkv_models'] = repr(error)
print(json.dumps(info))
'''
# Run after the build: the backends of each operator on the device.
BACKENDS_PROBE = r'''
import json, sys
from mmvrwkv.ops import (bi_wkv6_backends, bi_wkv_backends,
                         ms_deform_attn_backends)
device = sys.argv[1]
print(json.dumps(dict(bi_wkv=bi_wkv_backends(device),
                      bi_wkv6=bi_wkv6_backends(device),
                      ms_deform_attn=ms_deform_attn_backends(device))))
'''


def now_iso():
    return datetime.datetime.now().astimezone().isoformat(timespec='seconds')


def plan_limit(phase, remaining, later, dry=False):
    """Seconds ``phase`` may take with ``remaining`` seconds of the budget
    left and the ``later`` phases still to run (each keeps its minimum);
    None when that is below the phase's own minimum (it is skipped)."""
    own = phase.dry_limit if dry else phase.limit
    minimum = min(phase.minimum, own)
    reserve = sum(min(p.minimum, p.dry_limit if dry else p.limit)
                  for p in later)
    limit = min(own, remaining - reserve)
    return limit if limit >= minimum else None


def last_json_line(text):
    """The last line of ``text`` that parses as a JSON object, or None."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith('{'):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def parse_case_lines(text):
    """fla's report prints ``<case> <dict>`` on stderr as each case
    finishes: those cases, for a report that did not reach its JSON."""
    cases = {}
    for line in text.splitlines():
        match = re.match(r'^(\S+) (\{.*\})$', line.strip())
        if not match:
            continue
        # repr() writes inf and nan bare: quote them for literal_eval
        body = re.sub(r'(?<![\w\'".])(-?inf|nan)(?![\w\'"])', r"'\1'",
                      match.group(2))
        try:
            value = ast.literal_eval(body)
        except (ValueError, SyntaxError):
            continue
        cases[match.group(1)] = {
            k: float(v) if v in ('inf', '-inf', 'nan') else v
            for k, v in value.items()}
    return cases


def summarize_fla(cases):
    """The largest error of y and of each gradient per kernel and dtype
    (from the case names, ``<mode>-<dtype>-...``), and the failed cases."""
    worst = collections.defaultdict(dict)
    failed = {}
    for name, errors in cases.items():
        if 'failed' in errors:
            failed[name] = errors['failed']
            continue
        key = '-'.join(name.split('-')[:2])
        for q in ('y', 'gr', 'gk', 'gv', 'gw', 'gu', 'gw edge'):
            if isinstance(errors.get(q), (int, float)):
                worst[key][q] = max(worst[key].get(q, 0.), errors[q])
    return dict(max_errors=dict(worst), failed_cases=failed)


def parse_junit(path):
    """Counts of a pytest JUnit XML file: totals, per operator (the folder
    under tests/test_ops, or the module), skip reasons and failures."""
    root = ET.parse(path).getroot()
    counts = collections.Counter()
    groups = collections.defaultdict(collections.Counter)
    reasons = collections.Counter()
    failures = []
    for case in root.iter('testcase'):
        module = case.get('classname', '')
        parts = module.split('.')
        group = parts[2] if len(parts) > 3 and parts[1] == 'test_ops' \
            else parts[-1]
        outcome = 'passed'
        for child in case:
            if child.tag in ('failure', 'error'):
                outcome = 'failed' if child.tag == 'failure' else 'errors'
                failures.append(dict(
                    test=f"{module}::{case.get('name')}",
                    message=(child.get('message') or '')[:300]))
            elif child.tag == 'skipped':
                outcome = 'skipped'
                reason = child.get('message') or child.get('type') or ''
                reasons[re.sub(r'^.*?:\d+: ', '', reason)[:120]] += 1
        counts[outcome] += 1
        groups[group][outcome] += 1
    counts['total'] = sum(groups[g][k] for g in groups for k in groups[g])
    return dict(counts=dict(counts), by_operator={
        g: dict(c) for g, c in groups.items()}, skip_reasons=dict(reasons),
        failures=failures[:30])


def parse_pytest_lines(text):
    """Counts from ``pytest -v`` lines, where no JUnit file was written
    (the run was killed)."""
    counts = collections.Counter()
    for match in re.finditer(
            r'^\S+::\S+ (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)', text,
            re.M):
        outcome = match.group(1).lower()
        counts[{'xfail': 'skipped', 'xpass': 'passed',
                'error': 'errors'}.get(outcome, outcome)] += 1
    counts['total'] = sum(counts.values())
    return dict(counts=dict(counts))


def parse_sanitizer(text):
    """compute-sanitizer's error count (memcheck, initcheck: 'ERROR
    SUMMARY: n errors'; racecheck: 'RACECHECK SUMMARY: n hazards') and
    pytest's result line."""
    result = {}
    match = re.search(r'ERROR SUMMARY: (\d+) error', text)
    if match:
        result['errors'] = int(match.group(1))
    match = re.search(r'RACECHECK SUMMARY: (\d+) hazard', text)
    if match:
        result['hazards'] = int(match.group(1))
    lines = [line.strip('= ') for line in text.splitlines()
             if re.search(r'\d+ (passed|failed|skipped|error)', line)
             and 'SUMMARY' not in line]
    if lines:
        result['pytest'] = lines[-1]
    return result


def own_session():
    """In a command's child process before it starts: a process group of
    its own (stopped as one), and SIGINT's default action, which a shell
    sets to 'ignore' for a background job (Python then raises no
    KeyboardInterrupt and pytest would write no JUnit file)."""
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def find_sanitizer(cuda_home=None):
    """compute-sanitizer on PATH, in ``cuda_home`` or /usr/local/cuda."""
    folders = [os.path.join(d, 'bin') for d in (cuda_home, '/usr/local/cuda')
               if d]
    found = shutil.which('compute-sanitizer')
    return found or next((os.path.join(d, 'compute-sanitizer')
                          for d in folders if os.path.exists(
                              os.path.join(d, 'compute-sanitizer'))), None)


def fmt_ms(value):
    if not isinstance(value, (int, float)):
        return '–'
    return f'{value:.3g}' if value < 100 else f'{value:.0f}'


class Check:
    """One run of the check: the budget, the output folder and the log,
    the environment of the commands, the results."""

    def __init__(self, args):
        self.args = args
        self.start = time.monotonic()
        self.out = os.path.abspath(args.out)
        os.makedirs(self.out, exist_ok=True)
        self.work = tempfile.mkdtemp(prefix='gpu_check_')
        self.python = sys.executable
        self.log_path = os.path.join(self.out, LOG_NAME)
        open(self.log_path, 'w').close()
        self.env = dict(os.environ, PYTHONUNBUFFERED='1', MPLBACKEND='Agg')
        self.env['PYTHONPATH'] = os.pathsep.join(
            p for p in (ROOT, os.environ.get('PYTHONPATH')) if p)
        self.dry = args.dry_run
        self.budget = args.budget or (
            DRY_BUDGET_S if args.dry_run else DEFAULT_BUDGET_S)
        self.result = dict(
            tool='tools/gpu_check.py', started=now_iso(),
            argv=sys.argv[1:], mode='dry-run' if self.dry else 'gpu',
            budget_s=self.budget, phases={})
        self.child = None
        self.sanitizer = find_sanitizer(os.environ.get('CUDA_HOME'))

    # -- time and output --------------------------------------------------
    def elapsed(self):
        return time.monotonic() - self.start

    def remaining(self):
        return self.budget - self.elapsed()

    def log(self, text):
        with open(self.log_path, 'a') as f:
            f.write(text)

    def say(self, text):
        print(text, flush=True)

    def save(self):
        self.result['elapsed_s'] = round(self.elapsed(), 1)
        path = os.path.join(self.out, JSON_NAME)
        with open(path + '.tmp', 'w') as f:
            json.dump(self.result, f, indent=1, default=str)
        os.replace(path + '.tmp', path)

    def run(self, cmd, limit, label, env=None, stdout=None):
        """Run ``cmd`` in the repository for at most ``limit`` seconds
        (SIGINT to its process group a little before, SIGKILL at the
        limit), its output appended to the log. ``stdout``: a file for
        its standard output alone. Returns rc, seconds, timed_out and the
        output (the log's section)."""
        env = self.env if env is None else env
        header = f'\n==== {label}: {" ".join(cmd)}  (limit {limit:.0f} s)\n'
        self.log(header)
        start_offset = os.path.getsize(self.log_path)
        grace = min(10., 0.2 * limit)
        t0 = time.monotonic()
        timed_out = False
        with open(self.log_path, 'a') as log:
            out = open(stdout, 'w') if stdout else log
            try:
                self.child = subprocess.Popen(
                    cmd, cwd=ROOT, env=env, stdout=out, stderr=log,
                    stdin=subprocess.DEVNULL, preexec_fn=own_session)
                try:
                    rc = self.child.wait(timeout=max(limit - grace, 0.1))
                except subprocess.TimeoutExpired:
                    timed_out = True
                    rc = self.stop_child(grace)
                except KeyboardInterrupt:  # the check itself is stopped
                    self.stop_child(2.)
                    raise
            except OSError as error:  # no such program
                log.write(f'{error}\n')
                rc = 127
            finally:
                self.child = None
                if stdout:
                    out.close()
        seconds = time.monotonic() - t0
        with open(self.log_path, errors='replace') as f:
            f.seek(start_offset)
            output = f.read()
        self.log(f'==== {label}: rc {rc}, {seconds:.1f} s'
                 + (' (stopped at its limit)' if timed_out else '') + '\n')
        return dict(rc=rc, seconds=round(seconds, 1), timed_out=timed_out,
                    output=output)

    def stop_child(self, grace):
        """SIGINT to the running command's process group (pytest writes
        its JUnit file, the benchmarks have written their JSON), SIGKILL
        after ``grace`` seconds."""
        child = self.child
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGKILL, None)):
            try:
                os.killpg(child.pid, sig)
            except ProcessLookupError:
                break
            try:
                return child.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        return child.wait()

    def probe(self, cmd, timeout=20):
        """The first lines of a short command's output, or None."""
        try:
            res = subprocess.run(cmd, capture_output=True, text=True,
                                 timeout=timeout, env=self.env, cwd=ROOT)
        except (OSError, subprocess.TimeoutExpired):
            return None
        text = (res.stdout or res.stderr).strip()
        return text if res.returncode == 0 and text else None

    # -- phases -----------------------------------------------------------
    def phase_env(self, limit):
        res = {}
        deadline = time.monotonic() + limit
        if self.args.wheels:
            wheels = sorted(glob.glob(os.path.join(self.args.wheels,
                                                   '*.whl')))
            site = os.path.abspath(self.args.site or os.path.join(
                self.work, 'site'))
            cmd = [self.python, '-m', 'pip', 'install', '-q', '--no-index',
                   '--no-deps', '--no-compile', '--no-cache-dir', '--upgrade',
                   '--target', site, *wheels]
            install = self.run(cmd, deadline - time.monotonic(),
                               'wheels') if wheels else dict(rc=1)
            res['wheels'] = dict(folder=self.args.wheels, site=site,
                                 files=[os.path.basename(w) for w in wheels],
                                 rc=install['rc'])
            if install['rc'] != 0:
                return dict(res, status='failed',
                            detail=f'wheel install from {self.args.wheels} '
                            f'failed ({len(wheels)} wheels)')
            self.env['PYTHONPATH'] = os.pathsep.join(
                (site, self.env['PYTHONPATH']))
        code = ENV_PROBE.replace('PACKAGES', repr(PACKAGES))
        probe = self.run([self.python, '-c', code],
                         max(deadline - time.monotonic(), 5), 'versions')
        info = last_json_line(probe['output']) or {}
        res.update(info)
        cuda_home = info.get('cuda_home') or '/usr/local/cuda'
        nvcc = shutil.which('nvcc') or os.path.join(cuda_home, 'bin', 'nvcc')
        version = self.probe([nvcc, '--version'])
        res['nvcc'] = version.splitlines()[-1] if version else None
        smi = self.probe(['nvidia-smi', '--query-gpu=name,driver_version,'
                          'memory.total,clocks.sm,clocks.max.sm,'
                          'temperature.gpu,utilization.gpu',
                          '--format=csv,noheader'])
        res['nvidia_smi'] = smi
        self.sanitizer = find_sanitizer(cuda_home)
        res['compute_sanitizer'] = self.sanitizer
        if not info:
            return dict(res, status='failed',
                        detail='the version probe failed (see the log)')
        if not info.get('cuda_available') and not self.dry:
            self.dry = True
            self.result['mode'] = 'dry-run'
            res['note'] = 'no CUDA device: every later phase is a dry run'
        if self.dry:  # tiny CPU runs: no OpenMP spinning on shared cores
            self.env.setdefault('OMP_NUM_THREADS', '1')
        where = info.get('gpu') or 'no GPU'
        if info.get('capability'):
            where += f" (sm_{info['capability'].replace('.', '')})"
        detail = (f"torch {info.get('torch')}, CUDA {info.get('torch_cuda')}"
                  f", {where}")
        if smi:
            detail += f', driver {smi.split(",")[1].strip()}'
        if info.get('mmvrwkv_models') != 'import ok':
            detail += f"; mmvrwkv.models: {info.get('mmvrwkv_models')}"
        return dict(res, status='ok', detail=detail)

    def phase_build(self, limit):
        env_info = self.result['phases'].get('env', {})
        device = 'cpu' if self.dry else 'cuda'
        deadline = time.monotonic() + limit
        env = dict(self.env)
        if self.dry:
            # setup.py is evaluated (sources, flags), nothing is compiled:
            # the checkout's extension is in use by others' runs
            cmd = [self.python, 'setup.py', '--version']
            res = dict(would_run='FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=<GPU '
                       'capability> MAX_JOBS=<cores> python setup.py '
                       'build_ext --inplace')
        else:
            arch = os.environ.get('TORCH_CUDA_ARCH_LIST') or \
                env_info.get('capability', '')
            jobs = os.environ.get('MAX_JOBS') or str(os.cpu_count())
            env.update(FORCE_CUDA='1', TORCH_CUDA_ARCH_LIST=arch,
                       MAX_JOBS=jobs)
            cmd = [self.python, 'setup.py', 'build_ext', '--inplace']
            res = dict(arch_list=arch, max_jobs=int(jobs))
        # 15 s of the limit are for the backends' probe after the build
        build = self.run(cmd, max(limit - 15, 5), 'build', env=env)
        res.update(command=' '.join(cmd), rc=build['rc'],
                   build_s=build['seconds'])
        if build['timed_out']:
            return dict(res, status='cut_short', detail='build stopped '
                        f"at its {build['seconds']:.0f} s limit")
        if build['rc'] != 0:
            return dict(res, status='failed', detail='build failed: ' +
                        build['output'].strip().splitlines()[-1][:150]
                        if build['output'].strip() else 'build failed')
        probe = self.run([self.python, '-c', BACKENDS_PROBE, device],
                         max(deadline - time.monotonic(), 15), 'backends')
        backends = last_json_line(probe['output'])
        res['backends'] = dict(device=device, **(backends or {}))
        compiled = [op for op, names in (backends or {}).items()
                    if 'compiled' in names]
        how = 'setup.py evaluated (dry run)' if self.dry else \
            f"{build['seconds']:.0f} s, TORCH_CUDA_ARCH_LIST=" \
            f"{res['arch_list']}, {res['max_jobs']} jobs"
        detail = f"{how}; compiled on {device}: {', '.join(compiled)}"
        missing = {'bi_wkv', 'bi_wkv6'} - set(compiled)
        if backends is None or (missing and not self.dry):
            return dict(res, status='failed', detail=detail +
                        f"; MISSING: {', '.join(sorted(missing))}")
        return dict(res, status='ok', detail=detail)

    def phase_tests(self, limit):
        junit = os.path.join(self.out, JUNIT_NAME)
        if os.path.exists(junit):
            os.remove(junit)
        cmd = [self.python, '-m', 'pytest', 'tests/test_ops', '-m', 'gpu',
               '-v', '-p', 'no:cacheprovider', f'--junitxml={junit}']
        run = self.run(cmd, limit, 'tests')
        try:
            res = parse_junit(junit)
            res['junit'] = JUNIT_NAME
        except (OSError, ET.ParseError):
            res = parse_pytest_lines(run['output'])
            res['junit'] = None
        res.update(command=' '.join(cmd[1:]), rc=run['rc'])
        c = collections.Counter(res['counts'])
        detail = (f"{c['passed']} passed, {c['failed'] + c['errors']} "
                  f"failed, {c['skipped']} skipped of {c['total']}")
        reasons = res.get('skip_reasons', {})
        if reasons:
            detail += ' (skipped: ' + '; '.join(
                f'{n}x {r}' for r, n in sorted(
                    reasons.items(), key=lambda kv: -kv[1])[:3]) + ')'
        if run['timed_out']:
            return dict(res, status='cut_short', detail=f'stopped at its '
                        f'{limit:.0f} s limit; ' + detail)
        failed = c['failed'] + c['errors'] > 0 or run['rc'] not in (0, 1) \
            or c['total'] == 0
        return dict(res, status='failed' if failed else 'ok', detail=detail)

    def phase_fla_report(self, limit):
        env = dict(self.env)
        device = 'cpu' if self.dry else 'cuda'
        if self.dry:
            env['TRITON_INTERPRET'] = '1'
        cmd = [self.python, '-m', 'tests.test_ops.test_bi_wkv6.test_fla',
               '--device', device]
        stdout = os.path.join(self.work, 'fla_report.json')
        run = self.run(cmd, limit, 'fla_report', env=env, stdout=stdout)
        with open(stdout, errors='replace') as f:
            text = f.read()
        self.log(text)
        cases = last_json_line(text)
        complete = cases is not None
        if not complete:  # stopped or failed: the cases it printed
            cases = parse_case_lines(run['output'])
        res = dict(command=' '.join(cmd[1:]), device=device, rc=run['rc'],
                   complete=complete, cases=cases, **summarize_fla(cases))
        detail = f"{len(cases)} cases, {len(res['failed_cases'])} failed"
        for mode in ('chunk', 'fused_recurrent', 'auto'):
            worst = [v for k, v in res['max_errors'].items()
                     if k.split('-')[0] == mode]
            parts = [f'{q} {max(w[q] for w in worst if q in w):.1e}'
                     for q in ('y', 'gw') if any(q in w for w in worst)]
            if parts:
                detail += f'; {mode} max ' + ' '.join(parts)
        if run['timed_out']:
            return dict(res, status='cut_short', detail=f'stopped at its '
                        f'{limit:.0f} s limit; ' + detail)
        bad = run['rc'] != 0 or (res['failed_cases'] and not self.dry)
        return dict(res, status='failed' if bad else 'ok', detail=detail)

    def phase_sanitizer(self, limit):
        deadline = time.monotonic() + limit
        collect = self.run(
            [self.python, '-m', 'pytest', *SANITIZER_TESTS, '--collect-only',
             '-q', '-p', 'no:cacheprovider', '-o', 'addopts='],
            min(60., limit / 3), 'sanitizer selection')
        selection = [line.strip() for line in collect['output'].splitlines()
                     if '::' in line and not line.startswith('====')]
        res = dict(selection=selection, tools={})
        if not selection:
            return dict(res, status='failed',
                        detail='the sanitizer selection matches no test')
        if self.dry or not self.sanitizer:
            why = 'dry run' if self.dry else 'compute-sanitizer not found'
            return dict(res, status='skipped', reason=why,
                        detail=f'{why}; {len(selection)} tests selected')
        # each tensor its own allocation, so that memcheck sees the bounds
        env = dict(self.env, PYTORCH_NO_CUDA_MEMORY_CACHING='1')
        status, parts = 'ok', []
        for i, tool in enumerate(SANITIZER_TOOLS):
            left = deadline - time.monotonic()
            share = left / (len(SANITIZER_TOOLS) - i)
            if share < 10:
                res['tools'][tool] = dict(status='skipped', reason='budget')
                parts.append(f'{tool} skipped')
                status = 'cut_short' if status == 'ok' else status
                continue
            cmd = [self.sanitizer, '--tool', tool, '--error-exitcode',
                   str(SANITIZER_EXIT), '--print-limit', '20', self.python,
                   '-m', 'pytest', *selection, '-q', '-p', 'no:cacheprovider',
                   '-o', 'addopts=']
            run = self.run(cmd, share, f'sanitizer {tool}', env=env)
            found = parse_sanitizer(run['output'])
            errors = found.get('errors', found.get('hazards'))
            if run['timed_out']:
                one = 'cut_short'
            elif run['rc'] == 0 and errors in (0, None):
                one = 'ok'
            else:
                one = 'failed'
            res['tools'][tool] = dict(status=one, rc=run['rc'],
                                      seconds=run['seconds'], **found)
            parts.append(f'{tool} {one}' + (
                f' ({errors} errors)' if errors else ''))
            if one == 'failed' or (one == 'cut_short' and status == 'ok'):
                status = one if status != 'failed' else status
        return dict(res, status=status, detail=', '.join(parts) +
                    f'; {len(selection)} tests')

    def phase_bench(self, name, limit):
        out = os.path.join(self.work, f'{name}.json')
        args = list(BENCH_ARGS[name]['dry' if self.dry else 'gpu'])
        if name == 'bench_backbone':
            args += ['--deit-impl', self.args.deit_impl,
                     '--plot', os.path.join(self.out, PLOT_NAME)]
        cmd = [self.python, f'benchmarks/{name}.py', *args, '--budget',
               f'{max(1., BENCH_BUDGET_SHARE * limit):.0f}', '--json', out]
        run = self.run(cmd, limit, name)
        try:
            with open(out) as f:
                result = json.load(f)
        except (OSError, ValueError):
            result = None
        res = dict(command=' '.join(cmd[1:]), rc=run['rc'], result=result)
        rows = (result or {}).get('rows', [])
        errors = [r for r in rows if 'error' in r]
        detail = f'{len(rows)} cases' + (
            f', {len(errors)} failed: {errors[0]["error"][:80]}'
            if errors else '')
        detail += '; ' + bench_headline(name, rows)
        machine = (result or {}).get('machine', {})
        # a backend it was asked to time that cannot run here (fla not
        # installed, say): a failure on a GPU, expected in a dry run
        unavailable = machine.get('unavailable', {})
        for backend, why in unavailable.items():
            detail += f'; {backend} unavailable: {why[:60]}'
        cut = run['timed_out'] or machine.get('cut_short')
        if run['rc'] != 0 and not run['timed_out'] or not rows or errors \
                or (unavailable and not self.dry):
            return dict(res, status='failed', detail=detail)
        return dict(res, status='cut_short' if cut else 'ok', detail=detail)

    # -- the run ----------------------------------------------------------
    def phase(self, name, limit):
        if name.startswith('bench_'):
            return self.phase_bench(name, limit)
        return getattr(self, f'phase_{name}')(limit)

    def main(self):
        """Every phase in order (``env`` always: the later ones need what
        it finds)."""
        selected = ('env', ) + tuple(self.args.phases or PHASE_NAMES)
        self.say(f'gpu_check: budget {self.budget:.0f} s, output '
                 f'{self.out}' + (' (dry run)' if self.dry else ''))
        for i, phase in enumerate(PHASES):
            if phase.name not in selected:
                self.record(phase.name, dict(status='skipped',
                                             reason='not selected'), None)
                continue
            later = [p for p in PHASES[i + 1:] if p.name in selected]
            limit = plan_limit(phase, self.remaining(), later, self.dry)
            if limit is None:
                self.record(phase.name, dict(
                    status='skipped', reason='budget',
                    detail=f'{self.remaining():.0f} s left'), None)
                continue
            self.say(f'-- {phase.name} (up to {limit:.0f} s)')
            t0 = time.monotonic()
            try:
                res = self.phase(phase.name, limit)
            except KeyboardInterrupt:
                raise
            except Exception as error:  # a bug here: the others still run
                res = dict(status='failed',
                           detail=f'{type(error).__name__}: {error}')
            res['seconds'] = round(time.monotonic() - t0, 1)
            self.record(phase.name, res, limit)

    def record(self, name, res, limit):
        res['limit_s'] = None if limit is None else round(limit)
        self.result['phases'][name] = res
        if res['status'] != 'skipped' or res.get('reason') == 'budget':
            self.say(f"   {name}: {res['status']}"
                     + (f" ({res.get('seconds', 0):.0f} s)"
                        if 'seconds' in res else '')
                     + f" {res.get('detail', '')}")
        self.save()

    def finish(self, interrupted=False):
        self.result['finished'] = now_iso()
        if interrupted:
            self.result['interrupted'] = True
        phases = self.result['phases']
        rows = [[name, res['status'], res.get('seconds', '–'),
                 res.get('limit_s') or '–',
                 res.get('detail') or res.get('reason', '')]
                for name, res in phases.items()]
        self.result['summary'] = rows
        self.save()
        lines = timing_tables(phases)
        lines += ['', f"gpu_check summary ({self.result['mode']}, "
                  f'{self.elapsed():.0f} s of {self.budget:.0f} s):', '',
                  '| phase | status | s | limit s | result |',
                  '|---|---|---|---|---|']
        lines += ['| ' + ' | '.join(str(c) for c in row) + ' |'
                  for row in rows]
        lines.append(f'\nJSON: {os.path.join(self.out, JSON_NAME)}')
        with open(os.path.join(self.out, SUMMARY_NAME), 'w') as f:
            f.write('\n'.join(lines) + '\n')
        shutil.rmtree(self.work, ignore_errors=True)
        self.say('\n'.join(lines))
        return 1 if any(r[1] == 'failed' for r in rows) else 0


def bench_headline(name, rows):
    """One line of a benchmark's largest case: its times per
    implementation (forward + backward for the operators)."""
    rows = [r for r in rows if 'error' not in r]
    if not rows:
        return 'no timings'
    if name == 'bench_backbone':
        size = max(r['size'] for r in rows)
        dtype = rows[-1].get('dtype', 'float32')
        parts = [f"{r['model']} {fmt_ms(r.get('latency_ms'))} ms / "
                 f"{r.get('peak_mb', 0):.0f} MB" for r in rows
                 if r['size'] == size and r.get('dtype', 'float32') == dtype]
        return f'{size} px {dtype}: ' + ', '.join(parts)
    last = max(rows, key=lambda r: (r['T'], r['dtype'] != 'float32'))
    impls = [k[:-len('_fwdbwd_ms')] for k in last
             if k.endswith('_fwdbwd_ms') and not k.startswith('floor')]
    return f"T={last['T']} {last['dtype']} fwd+bwd ms: " + ', '.join(
        f'{i} {fmt_ms(last[f"{i}_fwdbwd_ms"])}' for i in impls)


def timing_tables(phases):
    """Markdown tables of the benchmarks' times, for the console."""
    lines = []
    for name in ('bench_bi_wkv', 'bench_bi_wkv6'):
        rows = ((phases.get(name) or {}).get('result') or {}).get('rows')
        if not rows:
            continue
        impls = list(dict.fromkeys(
            k[:-len('_fwd_ms')] for r in rows for k in r
            if k.endswith('_fwd_ms') and not k.startswith('floor')))
        head = ['dtype', 'T'] + [f'{i} fwd' for i in impls] + \
            [f'{i} fwd+bwd' for i in impls] + ['SDPA kernel']
        lines += ['', f'{name} (ms):', '',
                  '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
        for r in rows:
            cells = [r['dtype'], r['T']] + [
                fmt_ms(r.get(f'{i}_{p}_ms')) for p in ('fwd', 'fwdbwd')
                for i in impls] + [r.get('sdpa_kernel') or r.get(
                    'error', '–')[:40]]
            lines.append('| ' + ' | '.join(str(c) for c in cells) + ' |')
    rows = ((phases.get('bench_backbone') or {}).get('result') or {}).get(
        'rows')
    if rows:
        models = list(dict.fromkeys(r['model'] for r in rows))
        head = ['dtype', 'px'] + [f'{m} ms' for m in models] + \
            [f'{m} MB' for m in models]
        lines += ['', 'bench_backbone (batch 1, forward):', '',
                  '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
        by = {(r.get('dtype', 'float32'), r['size'], r['model']): r
              for r in rows}
        for dtype, size in dict.fromkeys((k[0], k[1]) for k in by):
            cells = [dtype, size]
            for key, fmt in (('latency_ms', fmt_ms), ('peak_mb', fmt_ms)):
                cells += [fmt(by.get((dtype, size, m), {}).get(key))
                          for m in models]
            lines.append('| ' + ' | '.join(str(c) for c in cells) + ' |')
    return lines


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('out', nargs='?', default='gpu_check_out',
                   help='output folder (default gpu_check_out)')
    p.add_argument('--budget', type=float, default=0,
                   help=f'seconds for all phases (default '
                   f'{DEFAULT_BUDGET_S}; {DRY_BUDGET_S} in a dry run)')
    p.add_argument('--dry-run', action='store_true',
                   help='the CPU stand-in of every phase, tiny sizes '
                   '(also what runs without a CUDA device)')
    p.add_argument('--wheels', help='install the *.whl of this folder '
                   '(pip --no-index --no-deps --target) first')
    p.add_argument('--site', help='where --wheels installs (default: a '
                   'temporary folder)')
    p.add_argument('--phases', nargs='+', choices=PHASE_NAMES,
                   help='run only these phases (default: all)')
    p.add_argument('--deit-impl', default='auto',
                   choices=['auto', 'mmpretrain', 'plain'],
                   help="DeiT-T of the backbone benchmark ('auto': "
                   'mmpretrain where installed, else plain PyTorch)')
    return p.parse_args(argv)


def main(argv=None):
    check = Check(parse_args(argv))

    def terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        check.main()
    except KeyboardInterrupt:
        check.say('gpu_check: interrupted')
        return check.finish(interrupted=True) or 1
    return check.finish()


if __name__ == '__main__':
    sys.exit(main())
