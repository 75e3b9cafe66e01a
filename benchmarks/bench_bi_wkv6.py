"""Bi-WKV6 operator benchmark: ``mmvrwkv.ops.bi_wkv6`` (its default
backend) against ``scaled_dot_product_attention`` at equal (B, T, C) and
heads (C // 64 heads of 64 channels, as VRWKV6 and a ViT of that width use).

Forward (``torch.no_grad``) and forward + backward (gradients of every
input: r, k, v, w, u against q, k, v), median of ``--repeats`` timed runs
after a warm-up (CUDA events on a GPU). The inputs look like VRWKV6's:
r, k, v unit normal, w in [-6, -1] (the range of the official decay init,
so decays exp(-exp(w)) between 0.998 and 0.69), u of scale 0.1. When a
compiled Bi-WKV6 operator is registered, the PyTorch reference is timed
too, up to ``--reference-max-tokens``.

Usage:
    python benchmarks/bench_bi_wkv6.py [--tokens 196 1024 4096 16384]
        [--channels 192] [--batch 1] [--repeats 5] [--device cpu]
        [--json docs/bench_bi_wkv6_cpu.json]
"""
import argparse
import inspect
import json
import os
import platform

import torch
import torch.nn.functional as F

from bench_bi_wkv import fwd_bwd, timed
from mmvrwkv.ops import bi_wkv6
from mmvrwkv.ops.ext_loader import load_ext

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


def bench_case(B, T, C, args, compiled_op):
    dev, dt = args.device, getattr(torch, args.dtype)
    ms = lambda s: round(s * 1e3, 3)  # noqa: E731
    inputs = make_inputs(B, T, C, dev, dt)
    row = dict(B=B, T=T, C=C, heads=C // HEAD_SIZE, dtype=args.dtype)
    backends = {'bi_wkv6': {}}
    if compiled_op and T <= args.reference_max_tokens:
        backends['reference'] = dict(backend='reference')
    for name, kw in backends.items():
        op = lambda *x, kw=kw: bi_wkv6(*x, **kw)  # noqa: E731
        with torch.no_grad():
            row[f'{name}_fwd_ms'] = ms(timed(lambda: op(*inputs), dev,
                                             args.repeats))
        row[f'{name}_fwdbwd_ms'] = ms(timed(fwd_bwd(op, inputs), dev,
                                            args.repeats))
    if T <= args.sdpa_max_tokens:
        qkv = tuple(
            torch.randn(B, C // HEAD_SIZE, T, HEAD_SIZE, device=dev,
                        dtype=dt, requires_grad=True) for _ in range(3))
        with torch.no_grad():
            row['sdpa_fwd_ms'] = ms(timed(
                lambda: F.scaled_dot_product_attention(*qkv), dev,
                args.repeats))
        row['sdpa_fwdbwd_ms'] = ms(timed(
            fwd_bwd(F.scaled_dot_product_attention, qkv), dev,
            args.repeats))
        for p in ('fwd', 'fwdbwd'):
            ratio = row[f'sdpa_{p}_ms'] / row[f'bi_wkv6_{p}_ms']
            row[f'sdpa_over_bi_wkv6_{p}'] = float(f'{ratio:.3g}')
    return row


def print_table(rows):
    cols = [('B', 'B'), ('T', 'T'), ('C', 'C'), ('heads', 'heads'),
            ('bi_wkv6_fwd_ms', 'Bi-WKV6 fwd ms'),
            ('bi_wkv6_fwdbwd_ms', 'Bi-WKV6 fwd+bwd ms'),
            ('sdpa_fwd_ms', 'SDPA fwd ms'),
            ('sdpa_fwdbwd_ms', 'SDPA fwd+bwd ms'),
            ('sdpa_over_bi_wkv6_fwd', 'SDPA / Bi-WKV6 (fwd)'),
            ('sdpa_over_bi_wkv6_fwdbwd', 'SDPA / Bi-WKV6 (fwd+bwd)')]
    if any('reference_fwd_ms' in r for r in rows):
        cols[6:6] = [('reference_fwd_ms', 'reference fwd ms'),
                     ('reference_fwdbwd_ms', 'reference fwd+bwd ms')]
    print('| ' + ' | '.join(head for _, head in cols) + ' |')
    print('|' + '---|' * len(cols))
    for r in rows:
        print('| ' + ' | '.join(str(r.get(key, '–')) for key, _ in cols)
              + ' |')


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--device', default='cpu')
    p.add_argument('--dtype', default='float32')
    p.add_argument('--batch', type=int, nargs='+', default=[1])
    p.add_argument('--channels', type=int, nargs='+', default=[192],
                   help='multiples of 64 (VRWKV6-T/S/B: 192/384/768)')
    p.add_argument('--tokens', type=int, nargs='+',
                   default=[196, 1024, 4096, 16384])
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--reference-max-tokens', type=int, default=1024)
    p.add_argument('--sdpa-max-tokens', type=int, default=16384)
    p.add_argument('--json', default=None,
                   help="results file (default docs/bench_bi_wkv6_"
                   "<device>[_<dtype>].json; '' writes none)")
    args = p.parse_args()
    if any(c % HEAD_SIZE for c in args.channels):
        p.error(f'--channels must be multiples of {HEAD_SIZE}, got '
                f'{args.channels}')
    if args.json is None:
        suffix = '' if args.dtype == 'float32' else f'_{args.dtype}'
        args.json = os.path.join(
            ROOT, 'docs', f'bench_bi_wkv6_{args.device}{suffix}.json')
    load_ext()  # the extension registers its operators when it loads
    compiled_op = hasattr(torch.ops.mmvrwkv, 'bi_wkv6')
    machine = dict(
        device=args.device, torch=torch.__version__,
        threads=torch.get_num_threads(),
        cpu=platform.processor() or platform.machine(),
        bi_wkv6_default_backend=inspect.signature(
            bi_wkv6).parameters['backend'].default,
        bi_wkv6_compiled_op=compiled_op,
        load_before=[round(v, 2) for v in os.getloadavg()])
    if args.device == 'cuda':
        machine['gpu'] = torch.cuda.get_device_name()
    print(machine, flush=True)
    rows = []
    for B in args.batch:
        for C in args.channels:
            for T in args.tokens:
                rows.append(bench_case(B, T, C, args, compiled_op))
                print(rows[-1], flush=True)
    machine['load_after'] = [round(v, 2) for v in os.getloadavg()]
    print_table(rows)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(machine=machine, rows=rows), f, indent=1)


if __name__ == '__main__':
    main()
