"""Bi-WKV6 operator benchmark: ``mmvrwkv.ops.bi_wkv6`` (its default
backend, or each of ``--backends``) against
``scaled_dot_product_attention`` at equal (B, T, C) and heads (C // 64
heads of 64 channels, as VRWKV6 and a ViT of that width use).

Forward (``torch.no_grad``) and forward + backward (gradients of every
input: r, k, v, w, u against q, k, v), median of ``--repeats`` timed runs
after ``--warmup`` runs (CUDA events on a GPU), for each dtype of
``--dtype`` (bfloat16 lets SDPA run FlashAttention on a GPU; each row
records the kernel SDPA chose). The inputs look like VRWKV6's:
r, k, v unit normal, w in [-6, -1] (the range of the official decay init,
so decays exp(-exp(w)) between 0.998 and 0.69), u of scale 0.1. When a
compiled Bi-WKV6 operator is registered, the PyTorch reference is timed
too, up to ``--reference-max-tokens``.

The default backend's columns are ``bi_wkv6_*``; a backend named in
``--backends`` (``compiled``, ``fla``, ``chunked``, ``reference``) gets
``<name>_*``, or the reason it cannot run here in the JSON's
``unavailable``. ``--budget`` stops starting cases once spent; the JSON is
rewritten after every case.

Usage:
    python benchmarks/bench_bi_wkv6.py [--tokens 196 1024 4096 16384]
        [--channels 192] [--batch 1] [--repeats 5] [--device cpu]
        [--dtype float32 [bfloat16]] [--backends auto [compiled fla]]
        [--budget SECONDS] [--json docs/bench_bi_wkv6_cpu.json]
"""
import argparse
import inspect
import os

import torch
import torch.nn.functional as F

from bench_bi_wkv import fwd_bwd, timed
from mmvrwkv.ops import BI_WKV6_BACKENDS, bi_wkv6
from mmvrwkv.ops.common import load_ext
from report import (Budget, cpu_name, gpu_info, load_average, print_table,
                    sdpa_kernel, write_json)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAD_SIZE = 64


def make_inputs(B, T, C, device, dtype):
    """r, k, v, w of shape (B, T, C) and u of shape (C // 64, 64), all
    requiring gradients."""
    g = torch.Generator().manual_seed(0)
    r, k, v = (torch.randn(B, T, C, generator=g) for _ in range(3))
    w = -6 + 5 * torch.rand(B, T, C, generator=g)
    u = 0.1 * torch.randn(C // HEAD_SIZE, HEAD_SIZE, generator=g)
    return tuple(x.to(device, dtype).requires_grad_()
                 for x in (r, k, v, w, u))


def column(backend):
    """The prefix of a backend's columns: ``bi_wkv6`` for the default."""
    return 'bi_wkv6' if backend == 'auto' else backend


def bench_case(B, T, C, dtype, backends, args, compiled_op):
    dev, dt = args.device, getattr(torch, dtype)
    ms = lambda s: round(s * 1e3, 3)  # noqa: E731
    inputs = make_inputs(B, T, C, dev, dt)
    row = dict(B=B, T=T, C=C, heads=C // HEAD_SIZE, dtype=dtype)
    runs = {column(b): ({} if b == 'auto' else dict(backend=b))
            for b in backends}
    if compiled_op and T <= args.reference_max_tokens:
        runs.setdefault('reference', dict(backend='reference'))

    def time_it(fn):
        return ms(timed(fn, dev, args.repeats, args.warmup))

    for name, kw in runs.items():
        op = lambda *x, kw=kw: bi_wkv6(*x, **kw)  # noqa: E731
        with torch.no_grad():
            row[f'{name}_fwd_ms'] = time_it(lambda: op(*inputs))
        row[f'{name}_fwdbwd_ms'] = time_it(fwd_bwd(op, inputs))
    if T <= args.sdpa_max_tokens:
        qkv = tuple(
            torch.randn(B, C // HEAD_SIZE, T, HEAD_SIZE, device=dev,
                        dtype=dt, requires_grad=True) for _ in range(3))
        row['sdpa_kernel'] = sdpa_kernel(*qkv)
        with torch.no_grad():
            row['sdpa_fwd_ms'] = time_it(
                lambda: F.scaled_dot_product_attention(*qkv))
        row['sdpa_fwdbwd_ms'] = time_it(
            fwd_bwd(F.scaled_dot_product_attention, qkv))
        for name in map(column, backends):
            for p in ('fwd', 'fwdbwd'):
                ratio = row[f'sdpa_{p}_ms'] / row[f'{name}_{p}_ms']
                row[f'sdpa_over_{name}_{p}'] = float(f'{ratio:.3g}')
    return row


def print_results(rows, backends):
    cols = [('B', 'B'), ('T', 'T'), ('C', 'C'), ('heads', 'heads'),
            ('dtype', 'dtype')]
    labels = {'bi_wkv6': 'Bi-WKV6'}
    names = [column(b) for b in backends]
    if any('reference_fwd_ms' in r for r in rows) and \
            'reference' not in names:
        names.append('reference')
    for name in names:
        label = labels.get(name, name)
        cols += [(f'{name}_fwd_ms', f'{label} fwd ms'),
                 (f'{name}_fwdbwd_ms', f'{label} fwd+bwd ms')]
    cols += [('sdpa_fwd_ms', 'SDPA fwd ms'),
             ('sdpa_fwdbwd_ms', 'SDPA fwd+bwd ms')]
    for name in map(column, backends):
        label = labels.get(name, name)
        cols += [(f'sdpa_over_{name}_fwd', f'SDPA / {label} (fwd)'),
                 (f'sdpa_over_{name}_fwdbwd', f'SDPA / {label} (fwd+bwd)')]
    print_table([head for _, head in cols],
                [[r.get(key, '–') for key, _ in cols] for r in rows])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--device', default='cpu')
    p.add_argument('--dtype', nargs='+', default=['float32'],
                   choices=['float32', 'bfloat16', 'float16', 'float64'])
    p.add_argument('--backends', nargs='+', default=['auto'],
                   choices=list(BI_WKV6_BACKENDS.names))
    p.add_argument('--batch', type=int, nargs='+', default=[1])
    p.add_argument('--channels', type=int, nargs='+', default=[192],
                   help='multiples of 64 (VRWKV6-T/S/B: 192/384/768)')
    p.add_argument('--tokens', type=int, nargs='+',
                   default=[196, 1024, 4096, 16384])
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--reference-max-tokens', type=int, default=1024)
    p.add_argument('--sdpa-max-tokens', type=int, default=16384)
    p.add_argument('--budget', type=float, default=0,
                   help='seconds; no case starts once spent (0: no limit)')
    p.add_argument('--json', default=None,
                   help="results file (default docs/bench_bi_wkv6_"
                   "<device>[_<dtype>...].json, no suffix for float32 "
                   "alone; '' writes none)")
    args = p.parse_args()
    if any(c % HEAD_SIZE for c in args.channels):
        p.error(f'--channels must be multiples of {HEAD_SIZE}, got '
                f'{args.channels}')
    if args.json is None:
        suffix = '' if args.dtype == ['float32'] else \
            '_' + '_'.join(args.dtype)
        args.json = os.path.join(
            ROOT, 'docs', f'bench_bi_wkv6_{args.device}{suffix}.json')
    budget = Budget(args.budget)
    load_ext()  # the extension registers its operators when it loads
    compiled_op = hasattr(torch.ops.mmvrwkv, 'bi_wkv6')
    machine = dict(
        device=args.device, torch=torch.__version__,
        threads=torch.get_num_threads(),
        cpu=cpu_name(),
        bi_wkv6_default_backend=inspect.signature(
            bi_wkv6).parameters['backend'].default,
        bi_wkv6_compiled_op=compiled_op, **gpu_info(args.device),
        load_before=load_average())
    # a named backend that cannot run here is left out, with the reason
    unavailable = {}
    for b in args.backends:
        for dtype in args.dtype:
            why = b != 'auto' and BI_WKV6_BACKENDS.backends[b].unsupported(
                torch.device(args.device), getattr(torch, dtype))
            if why:
                unavailable[b] = why
    backends = [b for b in args.backends if b not in unavailable]
    if unavailable:
        machine['unavailable'] = unavailable
    print(machine, flush=True)
    rows = []
    for dtype in args.dtype:
        for B in args.batch:
            for C in args.channels:
                for T in args.tokens:
                    if budget.exhausted():
                        continue
                    try:
                        row = bench_case(B, T, C, dtype, backends, args,
                                         compiled_op)
                    except Exception as error:  # e.g. out of memory
                        row = dict(B=B, T=T, C=C, heads=C // HEAD_SIZE,
                                   dtype=dtype,
                                   error=str(error).splitlines()[0])
                    rows.append(row)
                    print(rows[-1], flush=True)
                    write_json(args.json, dict(machine, **budget.record()),
                               rows)
    machine['load_after'] = load_average()
    machine.update(budget.record())
    print_results(rows, backends)
    write_json(args.json, machine, rows)


if __name__ == '__main__':
    main()
