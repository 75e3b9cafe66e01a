"""Side-by-side timing of two versions of the CPU Bi-WKV kernels in one
process: the ``cuda_ops/`` of a git revision (``--base``, default HEAD)
against that of the working tree, each built CPU-only with the flags of
setup.py into a temporary folder. Cases alternate between the two builds
(``--rounds`` times, best median kept), so both see the same machine load;
the memory-traffic floor (read k and v, write y, at the copy bandwidth
measured in the same run) is as in ``bench_bi_wkv.py``.

Usage:
    python benchmarks/ab_cpu_kernels.py [--base REV] [--threads 2]
        [--cases 1x4096x192 8x1024x384] [--backward] [--json out.json]
"""
import argparse
import glob
import json
import os
import subprocess
import tarfile
import tempfile

import torch
from torch.utils.cpp_extension import load

# a sibling module: running this script puts its folder on the path
from bench_bi_wkv import copy_bandwidth, timed

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

FLAGS = ['-O3', '-std=c++20', '-fno-trapping-math', '-fopenmp', '-Wno-psabi']


def checkout_ops(rev: str, dest: str) -> str:
    """``cuda_ops/`` of ``rev`` extracted under ``dest``."""
    archive = os.path.join(dest, 'ops.tar')
    subprocess.run(['git', 'archive', '-o', archive, rev, 'cuda_ops'],
                   cwd=ROOT, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter='data')
    return os.path.join(dest, 'cuda_ops')


def build(name: str, ops: str, build_dir: str):
    """The CPU kernels of ``ops`` (a cuda_ops/ folder) with the raw entries
    of pybind.cpp, without the operator registrations (two builds in one
    process would register the same operators twice)."""
    if os.path.isdir(os.path.join(ops, 'bi_wkv')):  # one folder per op
        sources = [os.path.join(ops, 'pybind.cpp')]
        sources += sorted(glob.glob(os.path.join(ops, 'common', '*.cpp')))
        sources += sorted(glob.glob(os.path.join(ops, 'bi_wkv', 'cpu',
                                                 '*.cpp')))
        includes = [os.path.join(ops, d) for d in ('common', 'bi_wkv')]
    else:  # revisions before the per-operator layout
        sources = [os.path.join(ops, p) for p in ('bi_wkv.cpp', 'pybind.cpp')]
        sources += sorted(glob.glob(os.path.join(ops, 'cpu',
                                                 'bi_wkv_cpu*.cpp')))
        includes = [os.path.join(ops, 'include')]
    os.makedirs(build_dir, exist_ok=True)
    return load(name, sources, extra_include_paths=includes,
                extra_cflags=FLAGS, extra_ldflags=['-fopenmp'],
                build_directory=build_dir, verbose=False)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--base', default='HEAD')
    p.add_argument('--threads', type=int, default=torch.get_num_threads())
    p.add_argument('--cases', nargs='+',
                   default=['1x4096x192', '1x1024x384', '8x1024x384',
                            '1x4096x768', '1x16384x192'],
                   help='BxTxC')
    p.add_argument('--repeats', type=int, default=20)
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--backward', action='store_true',
                   help='time the backward kernel too')
    p.add_argument('--json')
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tmp = tempfile.mkdtemp(prefix='ab_cpu_kernels_')
    exts = {
        args.base: build('ab_base', checkout_ops(args.base, tmp),
                         os.path.join(tmp, 'build_base')),
        'working tree': build('ab_work', os.path.join(ROOT, 'cuda_ops'),
                              os.path.join(tmp, 'build_work')),
    }
    bandwidth = copy_bandwidth('cpu', args.repeats)
    print(f'threads {args.threads}, copy bandwidth '
          f'{bandwidth / 1e9:.1f} GB/s')
    names = list(exts)
    head = ['B', 'T', 'C', 'pass'] + [f'{n} ms' for n in names] + \
        [f'{n} / floor' for n in names] + ['speed-up']
    print('| ' + ' | '.join(head) + ' |')
    print('|' + '---|' * len(head))
    rows = []
    for case in args.cases:
        B, T, C = (int(x) for x in case.split('x'))
        g = torch.Generator().manual_seed(0)
        w, u = torch.rand(C, generator=g) / T, torch.rand(C, generator=g) / T
        k, v, gy = (torch.randn(B, T, C, generator=g) for _ in range(3))
        passes = {'forward': lambda e: e.bi_wkv_forward(w, u, k, v)}
        if args.backward:
            passes['backward'] = lambda e: e.bi_wkv_backward(w, u, k, v, gy)
        for name, fn in passes.items():
            best = {n: float('inf') for n in names}
            for _ in range(args.rounds):
                for n in names:
                    best[n] = min(best[n], timed(
                        lambda: fn(exts[n]), 'cpu', args.repeats))
            # forward moves k, v, y; backward k, v, gy, gk, gv
            floor = (3 if name == 'forward' else 5) * B * T * C * 4 / \
                bandwidth
            row = dict(B=B, T=T, C=C, kernel=name, floor_ms=floor * 1e3,
                       **{f'{n}_ms': best[n] * 1e3 for n in names})
            rows.append(row)
            print('| ' + ' | '.join(
                [str(B), str(T), str(C), name] +
                [f'{best[n] * 1e3:.3f}' for n in names] +
                [f'{best[n] / floor:.1f}' for n in names] +
                [f'{best[names[0]] / best[names[1]]:.2f}x']) + ' |',
                flush=True)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(threads=args.threads, copy_GBps=bandwidth / 1e9,
                           base=args.base, rows=rows), f, indent=1)


if __name__ == '__main__':
    main()
