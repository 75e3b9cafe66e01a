"""tools/gpu_check.sh without a GPU: its dry run (every phase's CPU
stand-in at tiny sizes: the wheel install, the ``-m gpu`` selection, fla's
report in Triton's interpreter, the sanitizer's selection, the three
benchmarks on the CPU, the JSON and the summary), its time budget, the
parsers of what the phases print, and the plain-PyTorch DeiT the backbone
benchmark uses where mmpretrain is missing (the GPU image has none).

The script and the benchmarks are scripts, not modules of a package: their
functions are called in a child Python started in their folder, as they
import each other."""
import json
import os
import re
import subprocess
import sys
import zipfile

import pytest

from mmvrwkv.ops import bi_wkv_backends

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
PHASES = ['env', 'build', 'tests', 'fla_report', 'sanitizer', 'bench_bi_wkv',
          'bench_bi_wkv6', 'bench_backbone']
STATUSES = {'ok', 'failed', 'cut_short', 'skipped'}
# what the device tool brings back from $OUT: at most 8 files, named in
# letters, digits, '.', '_' and '-'
OUT_FILE = re.compile(r'^[A-Za-z0-9._-]+$')


def gpu_check(out, *args, timeout=300):
    env = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run(['bash', 'tools/gpu_check.sh', str(out), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def call(folder, module, function, *args):
    """``module.function(*args)`` (JSON in, JSON out) in a child Python
    started in ``folder``, where the scripts import each other."""
    code = (f'import json, sys, {module}\n'
            f'print(json.dumps({module}.{function}('
            '*json.loads(sys.argv[1]))))')
    res = subprocess.run([sys.executable, '-c', code, json.dumps(args)],
                         cwd=os.path.join(ROOT, folder), capture_output=True,
                         text=True, check=True, timeout=60)
    return json.loads(res.stdout)


def summary_rows(stdout):
    """The summary table, which the script prints last."""
    lines = stdout.strip().splitlines()
    assert lines[-1].startswith('JSON: ')
    head = max(i for i, line in enumerate(lines)
               if line.startswith('| phase | status |'))
    return [line.strip('| ').split(' | ') for line in lines[head + 2:-2]]


@pytest.mark.slow
def test_dry_run(tmp_path):
    """Every phase's logic without a GPU, in about a minute: the JSON has
    every phase with its time and limit, the budget holds, the summary
    comes last and the output folder is what the device tool returns."""
    out = tmp_path / 'out'
    res = gpu_check(out, '--dry-run', '--deit-impl', 'plain', '--budget',
                    '200')
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    result = json.loads((out / 'gpu_check.json').read_text())
    assert result['mode'] == 'dry-run'
    assert result['elapsed_s'] <= 200
    phases = result['phases']
    assert list(phases) == PHASES
    for name, phase in phases.items():
        assert phase['status'] in STATUSES, name
        assert phase['seconds'] <= phase['limit_s'] + 5, name
    statuses = {name: phase['status'] for name, phase in phases.items()}
    assert statuses == dict(env='ok', build='ok', tests='ok',
                            fla_report=statuses['fla_report'],
                            sanitizer='skipped', bench_bi_wkv='ok',
                            bench_bi_wkv6='ok', bench_backbone='ok')
    assert statuses['fla_report'] in ('ok', 'cut_short')

    env = phases['env']
    assert env['cuda_available'] is False and env['torch']
    assert env['mmvrwkv_models'] == 'import ok'
    assert {'torch', 'fla-core', 'mmengine', 'mmcv'} <= set(env['packages'])
    build = phases['build']
    assert 'build_ext --inplace' in build['would_run']
    if 'compiled' in bi_wkv_backends('cpu'):
        assert 'compiled' in build['backends']['bi_wkv6']

    # the CUDA tests of all three operators are selected, and skip here
    tests = phases['tests']
    assert set(tests['by_operator']) == {'test_bi_wkv', 'test_bi_wkv6',
                                         'test_ms_deform_attn'}
    assert tests['counts']['total'] >= 150
    assert tests['counts']['skipped'] == tests['counts']['total']
    assert tests['skip_reasons']["needs a GPU and mmcv's CUDA ops"] == \
        tests['by_operator']['test_ms_deform_attn']['skipped']
    assert (out / 'junit.xml').exists()

    fla = phases['fla_report']
    assert fla['device'] == 'cpu'
    for name, errors in fla['cases'].items():
        assert 'failed' in errors or errors['y'] < 1e-4, name
    sanitizer = phases['sanitizer']
    assert sanitizer['reason'] == 'dry run'
    assert len(sanitizer['selection']) == 4
    assert {s.split('/')[2] for s in sanitizer['selection']} == {
        'test_bi_wkv', 'test_bi_wkv6'}

    for name in ('bench_bi_wkv', 'bench_bi_wkv6'):
        rows = phases[name]['result']['rows']
        assert [r['dtype'] for r in rows] == ['float32', 'bfloat16']
        for row in rows:
            assert row['compiled_fwdbwd_ms'] > 0 and row['sdpa_fwd_ms'] > 0
    # fla runs on CUDA only (outside the interpreter): recorded, not timed
    machine = phases['bench_bi_wkv6']['result']['machine']
    assert 'CUDA' in machine['unavailable']['fla']
    backbone = phases['bench_backbone']['result']
    assert backbone['machine']['deit'] == 'plain'
    assert sorted((r['model'], r['dtype']) for r in backbone['rows']) == [
        (m, d) for m in ('deit_t', 'vrwkv6_t', 'vrwkv_t')
        for d in ('bfloat16', 'float32')]
    assert all(r['latency_ms'] > 0 for r in backbone['rows'])

    # the summary table comes last, one row per phase, as in the JSON
    rows = summary_rows(res.stdout)
    assert [r[0] for r in rows] == PHASES
    assert [r[1] for r in rows] == [statuses[p] for p in PHASES]
    assert [r[0:2] for r in result['summary']] == [r[0:2] for r in rows]
    files = sorted(os.listdir(out))
    assert files == ['bench_backbone.png', 'gpu_check.json', 'gpu_check.log',
                     'junit.xml', 'summary.md']
    assert all(OUT_FILE.match(f) for f in files)


def test_budget_too_small(tmp_path):
    """With less than a phase's minimum left, the phase is skipped and
    recorded so; the summary still comes last."""
    out = tmp_path / 'out'
    res = gpu_check(out, '--dry-run', '--budget', '5')
    assert res.returncode == 0, res.stderr
    phases = json.loads((out / 'gpu_check.json').read_text())['phases']
    assert {p['status'] for p in phases.values()} == {'skipped'}
    assert {p['reason'] for p in phases.values()} == {'budget'}
    assert [r[0] for r in summary_rows(res.stdout)] == PHASES


def make_wheel(folder):
    """A minimal pure-Python wheel: package ``gpu_check_probe``."""
    path = folder / 'gpu_check_probe-0.1-py3-none-any.whl'
    info = 'gpu_check_probe-0.1.dist-info'
    with zipfile.ZipFile(path, 'w') as whl:
        whl.writestr('gpu_check_probe/__init__.py', 'VALUE = 1\n')
        whl.writestr(f'{info}/METADATA', 'Metadata-Version: 2.1\n'
                     'Name: gpu-check-probe\nVersion: 0.1\n')
        whl.writestr(f'{info}/WHEEL', 'Wheel-Version: 1.0\nGenerator: '
                     'test\nRoot-Is-Purelib: true\nTag: py3-none-any\n')
        whl.writestr(f'{info}/RECORD', '')
    return path


def test_wheels_installed_from_a_folder(tmp_path):
    """--wheels installs the folder's wheels without an index (pip
    --no-index --no-deps --target) and puts them on the commands'
    PYTHONPATH."""
    (tmp_path / 'wheels').mkdir()
    make_wheel(tmp_path / 'wheels')
    site = tmp_path / 'site'
    res = gpu_check(tmp_path / 'out', '--dry-run', '--phases', 'env',
                    '--wheels', str(tmp_path / 'wheels'), '--site',
                    str(site))
    assert res.returncode == 0, res.stdout + res.stderr
    env = json.loads((tmp_path / 'out' / 'gpu_check.json').read_text())[
        'phases']['env']
    assert env['status'] == 'ok'
    assert env['wheels']['files'] == ['gpu_check_probe-0.1-py3-none-any.whl']
    assert env['wheels']['rc'] == 0
    assert (site / 'gpu_check_probe' / '__init__.py').exists()


def test_plan_limit():
    """A phase gets its limit, less what the later phases need at their
    minimum, and is skipped below its own minimum."""
    code = ('import gpu_check as g\n'
            'p = {x.name: x for x in g.PHASES}\n'
            'later = list(g.PHASES[2:])\n'
            "print(g.plan_limit(p['build'], 450, later), "
            "g.plan_limit(p['build'], 250, later), "
            "g.plan_limit(p['build'], 100, later), "
            "g.plan_limit(p['build'], 450, later, dry=True), "
            "sum(x.minimum for x in later))")
    res = subprocess.run([sys.executable, '-c', code], check=True,
                         cwd=os.path.join(ROOT, 'tools'),
                         capture_output=True, text=True)
    full, squeezed, skipped, dry, reserve = res.stdout.split()
    assert float(full) == 240 and float(dry) == 30
    assert float(squeezed) == 250 - float(reserve) < 240
    assert skipped == 'None'


def test_parse_fla_lines():
    """The cases fla's report printed before it was stopped, inf and nan
    included, and the largest errors per kernel and dtype."""
    text = ("chunk-fp32-B2-T15-H2-N64 {'gw edge': 0.0, 'y dtype': "
            "'torch.float32', 'y': 1e-06, 'gw': 0.02}\n"
            "chunk-fp32-B1-T65-H3-N64 {'y': 3e-06, 'gw': inf, 'gu': nan}\n"
            "chunk-bf16-B2-T197-H2-N64 {'failed': 'RuntimeError: x'}\n"
            'some other line\n')
    cases = call('tools', 'gpu_check', 'parse_case_lines', text)
    assert list(cases) == ['chunk-fp32-B2-T15-H2-N64',
                           'chunk-fp32-B1-T65-H3-N64',
                           'chunk-bf16-B2-T197-H2-N64']
    assert cases['chunk-fp32-B1-T65-H3-N64']['gw'] == float('inf')
    summary = call('tools', 'gpu_check', 'summarize_fla', cases)
    assert summary['max_errors']['chunk-fp32']['y'] == 3e-06
    assert summary['max_errors']['chunk-fp32']['gw'] == float('inf')
    assert summary['failed_cases'] == {
        'chunk-bf16-B2-T197-H2-N64': 'RuntimeError: x'}


def test_parse_junit(tmp_path):
    xml = tmp_path / 'junit.xml'
    xml.write_text(
        '<testsuites><testsuite>'
        '<testcase classname="tests.test_ops.test_bi_wkv.test_compiled" '
        'name="a[cuda]"/>'
        '<testcase classname="tests.test_ops.test_bi_wkv6.test_fla" '
        'name="b"><failure message="relative error 2 &gt; 1"/></testcase>'
        '<testcase classname="tests.test_ops.test_ms_deform_attn.'
        'test_compiled" name="c"><skipped message="needs mmcv"/>'
        '</testcase><testcase classname="tests.test_ops.'
        'test_cuda_resources" name="d"><error message="boom"/></testcase>'
        '</testsuite></testsuites>')
    res = call('tools', 'gpu_check', 'parse_junit', str(xml))
    assert res['counts'] == dict(passed=1, failed=1, skipped=1, errors=1,
                                 total=4)
    assert res['by_operator']['test_bi_wkv6'] == {'failed': 1}
    assert res['by_operator']['test_cuda_resources'] == {'errors': 1}
    assert res['skip_reasons'] == {'needs mmcv': 1}
    assert res['failures'][0] == dict(
        test='tests.test_ops.test_bi_wkv6.test_fla::b',
        message='relative error 2 > 1')
    # a run stopped before its XML: the -v lines
    lines = ('tests/test_ops/x.py::t[a] PASSED   [ 1%]\n'
             'tests/test_ops/x.py::t[b] SKIPPED (no GPU)   [ 2%]\n'
             'tests/test_ops/x.py::t[c] FAILED   [ 3%]\n')
    assert call('tools', 'gpu_check', 'parse_pytest_lines', lines) == dict(
        counts=dict(passed=1, skipped=1, failed=1, total=3))


def test_parse_sanitizer():
    memcheck = ('4 passed in 31.2s\n'
                '========= ERROR SUMMARY: 0 errors\n')
    assert call('tools', 'gpu_check', 'parse_sanitizer', memcheck) == dict(
        errors=0, pytest='4 passed in 31.2s')
    racecheck = ('1 failed, 3 passed in 50s\n'
                 '========= RACECHECK SUMMARY: 2 hazards displayed '
                 '(2 errors, 0 warnings)\n')
    found = call('tools', 'gpu_check', 'parse_sanitizer', racecheck)
    assert found['hazards'] == 2 and found['pytest'].startswith('1 failed')


@pytest.mark.skipif(
    subprocess.run([sys.executable, '-c', 'import mmpretrain'],
                   capture_output=True).returncode != 0,
    reason='needs mmpretrain')
def test_plain_deit_is_mmpretrains():
    """bench_backbone's PlainViT is mmpretrain's DeiT-T: the same state
    dict keys and shapes, and the same output (to float32 rounding) at
    224 px and at sizes that resize the position embedding or pad."""
    code = '''
import torch, bench_backbone as bb
torch.manual_seed(0)
a, b = bb.build('deit_t', 'mmpretrain'), bb.build('deit_t', 'plain')
sd = a.state_dict()
assert {k: v.shape for k, v in sd.items()} == {
    k: v.shape for k, v in b.state_dict().items()}
sd = {k: 0.05 * torch.randn_like(v) for k, v in sd.items()}
a.load_state_dict(sd)
b.load_state_dict(sd)
for hw in [(224, 224), (64, 80), (70, 93)]:
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        (ya, ), (yb, ) = a(x), b(x)
    assert ya.shape == yb.shape, (ya.shape, yb.shape)
    torch.testing.assert_close(yb, ya, rtol=1e-5, atol=1e-5)
print('ok')
'''
    res = subprocess.run([sys.executable, '-c', code],
                         cwd=os.path.join(ROOT, 'benchmarks'),
                         capture_output=True, text=True, timeout=120)
    assert res.stdout.strip() == 'ok', res.stderr[-3000:]
