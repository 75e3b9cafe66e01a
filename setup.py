"""Build and install mmvrwkv with its compiled Bi-WKV operator (mmvrwkv._ext).

The C++ CPU kernels are always built. The CUDA kernels are added when a GPU is
visible or FORCE_CUDA=1 (CUDA_HOME must point at nvcc); the target
architectures come from TORCH_CUDA_ARCH_LIST (nothing queries the build
machine's GPU). Build with: pip install --no-build-isolation -e .

As OpenMMLab packages do, the configs, the tools and the model index travel
inside the package as ``mmvrwkv/.mim/`` (what ``mim`` reads): linked in the
checkout (an editable install reads them there), copied into wheels and
sdists.
"""
import glob
import os
import shutil

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def read_version():
    scope = {}
    with open(os.path.join(ROOT, 'mmvrwkv', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


MIM_FILES = ('configs', 'tools', 'model-index.yml')


def add_mim_extension():
    """``mmvrwkv/.mim/{configs,tools,model-index.yml}`` as links to the
    originals (copies where links cannot be made). A wheel's build and an
    sdist follow the links, so they hold the files themselves."""
    mim = os.path.join(ROOT, 'mmvrwkv', '.mim')
    os.makedirs(mim, exist_ok=True)
    for name in MIM_FILES:
        src, dst = os.path.join(ROOT, name), os.path.join(mim, name)
        if not os.path.exists(src):
            continue  # building from an sdist: its copy is there already
        if os.path.islink(dst) or os.path.isfile(dst):
            os.remove(dst)
        elif os.path.isdir(dst):
            shutil.rmtree(dst)
        try:
            os.symlink(os.path.relpath(src, mim), dst)
        except OSError:  # no symbolic links (Windows without privileges)
            if os.path.isdir(src):
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns(
                    '__pycache__', '*.pyc'))
            else:
                shutil.copyfile(src, dst)


def mim_package_data():
    """The files under mmvrwkv/.mim, relative to the package."""
    package = os.path.join(ROOT, 'mmvrwkv')
    found = []
    for root, _, files in os.walk(os.path.join(package, '.mim'),
                                  followlinks=True):
        found += [os.path.relpath(os.path.join(root, f), package)
                  for f in files if not f.endswith('.pyc')]
    return sorted(found)


def read_requirements(name: str):
    """The requirement lines of requirements/<name>.txt (or of a file it
    includes with ``-r``), without comments."""
    path = os.path.join(ROOT, 'requirements', f'{name}.txt') \
        if not name.endswith('.txt') else os.path.join(ROOT, name)
    found = []
    with open(path) as f:
        for line in f:
            line = line.split('#')[0].strip()
            if line.startswith('-r '):
                found += read_requirements(os.path.join(
                    os.path.dirname(os.path.relpath(path, ROOT)),
                    line[3:].strip()))
            elif line:
                found.append(line)
    return found


def make_extension():
    import torch
    from torch.utils.cpp_extension import (CUDA_HOME, CppExtension,
                                           CUDAExtension)

    # one folder per operator (entry and registration, cpu/, cuda/), the
    # shared code in common/ (mmvrwkv/ops/README.md)
    ops = ['bi_wkv', 'bi_wkv6']
    srcs = ['cuda_ops/pybind.cpp'] + sorted(glob.glob('cuda_ops/common/*.cpp'))
    for op in ops:
        srcs += [f'cuda_ops/{op}/{op}.cpp'] + sorted(
            glob.glob(f'cuda_ops/{op}/cpu/*.cpp'))
    include_dirs = [os.path.join(ROOT, 'cuda_ops', d)
                    for d in ['common'] + ops]
    # -fno-trapping-math lets gcc if-convert the branch-free scan loops over
    # channel lanes (we never rely on floating-point traps). -fopenmp: ATen's
    # at::parallel_for is inline OpenMP in torch's headers and runs serially
    # in code built without it. -Wno-psabi: the baseline build passes the
    # kernels' 32-byte vectors in two SSE registers, which gcc notes as an ABI
    # change; they never cross a library boundary.
    cxx = ['-O3', '-std=c++20', '-fno-trapping-math', '-fopenmp', '-Wno-psabi']
    with_cuda = (torch.cuda.is_available() and CUDA_HOME is not None) or \
        os.getenv('FORCE_CUDA', '0') == '1'
    if with_cuda:
        return CUDAExtension(
            'mmvrwkv._ext',
            srcs + sorted(glob.glob('cuda_ops/*/cuda/*.cu')),
            include_dirs=include_dirs,
            define_macros=[('WITH_CUDA', None)],
            extra_compile_args={
                'cxx': cxx,
                # 3189: torch's headers trip it in every .cu (a flood of
                # warnings that hides ours); nothing in cuda_ops does.
                'nvcc': ['-O3', '-std=c++20', '--expt-relaxed-constexpr',
                         '--diag-suppress=3189'],
            },
            extra_link_args=['-fopenmp'])
    return CppExtension(
        'mmvrwkv._ext',
        srcs,
        include_dirs=include_dirs,
        extra_compile_args={'cxx': cxx},
        extra_link_args=['-fopenmp'])


def build_config():
    try:
        from torch.utils.cpp_extension import BuildExtension
    except ImportError:  # metadata-only invocations without torch
        return {}
    return dict(
        ext_modules=[make_extension()],
        cmdclass={'build_ext': BuildExtension.with_options(use_ninja=True)})


add_mim_extension()
setup(
    name='mmvrwkv',
    version=read_version(),
    description='Vision-RWKV for OpenMMLab 2.0 (mmengine, mmcv 2.x, '
    'mmdet 3.x, mmsegmentation 1.x, mmpretrain 1.x)',
    long_description=open(os.path.join(ROOT, 'README.md')).read()
    if os.path.exists(os.path.join(ROOT, 'README.md')) else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmvrwkv', 'mmvrwkv.*']),
    package_data={'mmvrwkv': ['ops/README.md'] + mim_package_data()},
    python_requires='>=3.8',
    # what `import mmvrwkv` needs; OpenMMLab's groups as extras:
    # [mim] the OpenMMLab packages, [onnx], [fla], [tests], [all]
    install_requires=read_requirements('runtime'),
    extras_require=dict(
        mim=read_requirements('mminstall'),
        onnx=[r for r in read_requirements('optional')
              if r.startswith('onnx')],
        fla=[r for r in read_requirements('optional')
             if r.startswith('fla')],
        optional=read_requirements('optional'),
        tests=read_requirements('tests'),
        all=read_requirements('requirements.txt')),
    zip_safe=False,
    **build_config())
