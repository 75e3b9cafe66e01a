"""mmvrwkv as an installed package: a wheel and an sdist build from this
checkout, hold what they must (the compiled extension, the configs and
tools and model index under mmvrwkv/.mim, the operators' sources and the
requirements), and the wheel installed where no source tree is visible
imports, runs its compiled operator and builds a config's model; the
installed metadata lists the runtime requirements only."""
import glob
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNTIME = os.path.join(ROOT, 'requirements', 'runtime.txt')


def build_env():
    """The environment of tools/setup_env.sh's build, so the wheel's build
    reuses the objects of the in-place build (same flags, same build/, and
    the same ninja: the environment's, first on PATH as setup_env.sh's
    activated venv has it; another ninja version discards the build log and
    rebuilds everything)."""
    env = dict(os.environ, MAX_JOBS=os.environ.get('MAX_JOBS', '2'))
    env['PATH'] = os.pathsep.join(
        [os.path.dirname(sys.executable), env.get('PATH', '')])
    cuda = os.environ.get('CUDA_HOME', '/usr/local/cuda')
    if 'FORCE_CUDA' not in env and os.path.exists(
            os.path.join(cuda, 'bin', 'nvcc')):
        env.update(FORCE_CUDA='1', CUDA_HOME=cuda)
    env.setdefault('TORCH_CUDA_ARCH_LIST', '8.0;9.0+PTX')
    return env


def run(cmd, cwd=ROOT, env=None, timeout=1800):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def runtime_requirements():
    with open(RUNTIME) as f:
        return sorted(line.split('#')[0].strip() for line in f
                      if line.split('#')[0].strip())


@pytest.fixture(scope='module')
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp('dist')
    env = build_env()
    run([sys.executable, '-m', 'pip', 'wheel', '--no-build-isolation',
         '--no-deps', '-q', '-w', str(out), '.'], env=env)
    run([sys.executable, 'setup.py', '-q', 'sdist', '-d', str(out)],
        env=env)
    wheels = glob.glob(str(out / 'mmvrwkv-*.whl'))
    sdists = glob.glob(str(out / 'mmvrwkv-*.tar.gz'))
    assert len(wheels) == 1 and len(sdists) == 1, os.listdir(out)
    return wheels[0], sdists[0]


@pytest.mark.slow
def test_wheel_holds_the_extension_configs_and_model_index(dist):
    names = zipfile.ZipFile(dist[0]).namelist()
    assert any(n.startswith('mmvrwkv/_ext') and n.endswith('.so')
               for n in names)
    for path in ('mmvrwkv/.mim/configs/vrwkv_t_in1k.py',
                 'mmvrwkv/.mim/configs/mask_rcnn_vrwkv_t.py',
                 'mmvrwkv/.mim/configs/mae/'
                 'mae_vrwkv_b_p16_8xb512-amp-coslr-800e_in1k.py',
                 'mmvrwkv/.mim/configs/_base_/vrwkv_runtime.py',
                 'mmvrwkv/.mim/tools/convert_official.py',
                 'mmvrwkv/.mim/model-index.yml',
                 'mmvrwkv/ops/README.md'):
        assert path in names, path
    metadata = [n for n in names if n.endswith('.dist-info/METADATA')]
    text = zipfile.ZipFile(dist[0]).read(metadata[0]).decode()
    required = sorted(line.split(':', 1)[1].strip().replace(' ', '')
                      for line in text.splitlines()
                      if line.startswith('Requires-Dist:')
                      and 'extra ==' not in line)
    # pip show mmvrwkv lists these: runtime only, no pytest or onnx
    assert required == [r.replace(' ', '') for r in runtime_requirements()]
    extras = {line.split(':', 1)[1].strip() for line in text.splitlines()
              if line.startswith('Provides-Extra:')}
    assert {'mim', 'onnx', 'fla', 'tests', 'all'} <= extras


@pytest.mark.slow
def test_sdist_holds_what_building_needs(dist):
    with tarfile.open(dist[1]) as tar:
        names = {n.split('/', 1)[1] for n in tar.getnames() if '/' in n}
    for path in ('setup.py', 'README.md', 'MANIFEST.in', 'requirements.txt',
                 'requirements/runtime.txt', 'requirements/optional.txt',
                 'cuda_ops/pybind.cpp', 'cuda_ops/common/cpu_isa.cpp',
                 'cuda_ops/common/cuda_launch.h',
                 'cuda_ops/bi_wkv/bi_wkv.cpp', 'cuda_ops/bi_wkv/bi_wkv.h',
                 'cuda_ops/bi_wkv/bi_wkv_scan.h',
                 'cuda_ops/bi_wkv/cpu/bi_wkv_cpu_kernel.h',
                 'cuda_ops/bi_wkv/cuda/bi_wkv_cuda.cu',
                 'cuda_ops/bi_wkv6/cuda/bi_wkv6_cuda.cu',
                 'mmvrwkv/version.py', 'mmvrwkv/.mim/model-index.yml',
                 'mmvrwkv/.mim/configs/vrwkv_t_in1k.py', 'model-index.yml',
                 'configs/vrwkv_t_in1k.py'):
        assert path in names, path
    # every source setup.py compiles is there
    for pattern in ('cuda_ops/**/*.cpp', 'cuda_ops/**/*.cu',
                    'cuda_ops/**/*.h'):
        for path in glob.glob(os.path.join(ROOT, pattern), recursive=True):
            assert os.path.relpath(path, ROOT) in names, path
    assert not any(n.endswith(('.so', '.pyc')) for n in names)


_INSTALLED = '''
import os, sys, torch
import mmvrwkv
assert mmvrwkv.__file__.startswith(sys.argv[1]), mmvrwkv.__file__
from mmvrwkv.ops import bi_wkv, bi_wkv_backends
assert 'compiled' in bi_wkv_backends('cpu'), bi_wkv_backends('cpu')
w, u = torch.rand(8) / 10, torch.rand(8) / 10
k, v = torch.randn(1, 20, 8), torch.randn(1, 20, 8)
y = bi_wkv(w, u, k, v, backend='compiled')
ref = bi_wkv(w, u, k, v, backend='reference')
assert (y - ref).abs().max() < 1e-5
from mmvrwkv.apis import build_model
from mmvrwkv.utils import config_path
cfg = config_path('vrwkv_t_in1k.py')
assert cfg.startswith(sys.argv[1]), cfg
model = build_model(cfg, {'model.backbone.img_size': 64})
print('installed', type(model.backbone).__name__, mmvrwkv.__version__)
'''


@pytest.mark.slow
def test_wheel_installs_where_no_source_tree_is_visible(dist, tmp_path):
    """Installed into an empty folder, run from another: the package, its
    compiled operator and its configs come from the wheel, not the
    checkout."""
    site = tmp_path / 'site'
    run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps',
         '--no-index', '--target', str(site), dist[0]])
    work = tmp_path / 'elsewhere'
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site))
    out = run([sys.executable, '-c', _INSTALLED, str(site)], cwd=str(work),
              env=env)
    assert 'installed VRWKV' in out
    shutil.rmtree(site)
