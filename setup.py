"""Build and install mmvrwkv with its compiled Bi-WKV operator (mmvrwkv._ext).

The C++ CPU kernels are always built. The CUDA kernels are added when a GPU is
visible or FORCE_CUDA=1 (CUDA_HOME must point at nvcc); the target
architectures come from TORCH_CUDA_ARCH_LIST (nothing queries the build
machine's GPU). Build with: pip install --no-build-isolation -e .
"""
import glob
import os

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def read_version():
    scope = {}
    with open(os.path.join(ROOT, 'mmvrwkv', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def read_requirements():
    with open(os.path.join(ROOT, 'requirements.txt')) as f:
        return [
            line.split('#')[0].strip() for line in f
            if line.split('#')[0].strip()
            and not line.startswith(('-', 'torch'))
        ]


def make_extension():
    import torch
    from torch.utils.cpp_extension import (CUDA_HOME, CppExtension,
                                           CUDAExtension)
    srcs = ['cuda_ops/bi_wkv.cpp', 'cuda_ops/bi_wkv6.cpp',
            'cuda_ops/bi_wkv_library.cpp', 'cuda_ops/pybind.cpp'] + sorted(
        glob.glob('cuda_ops/cpu/*.cpp'))
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
            srcs + sorted(glob.glob('cuda_ops/cuda/*.cu')),
            include_dirs=[os.path.join(ROOT, 'cuda_ops', 'include')],
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
        include_dirs=[os.path.join(ROOT, 'cuda_ops', 'include')],
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


setup(
    name='mmvrwkv',
    version=read_version(),
    description='Vision-RWKV for OpenMMLab 2.0 (mmengine, mmcv 2.x, '
    'mmdet 3.x, mmsegmentation 1.x, mmpretrain 1.x)',
    long_description=open(os.path.join(ROOT, 'README.md')).read()
    if os.path.exists(os.path.join(ROOT, 'README.md')) else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmvrwkv', 'mmvrwkv.*']),
    python_requires='>=3.8',
    install_requires=read_requirements(),
    zip_safe=False,
    **build_config())
