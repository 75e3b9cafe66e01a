"""Bi-WKV operator benchmark: compiled kernel vs the PyTorch reference vs
scaled_dot_product_attention on the same (B, T, C) split into 64-wide heads
(the attention a ViT would run instead), with the memory-traffic floor.

Median of --repeats timed runs after a warm-up (CUDA events on GPU).
Usage: python benchmarks/bench_bi_wkv.py [--device cpu]
    [--json docs/bench_bi_wkv_cpu.json]
"""
import argparse
import json
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from mmvrwkv.ops import bi_wkv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(fn, device, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device == 'cuda':
            start, end = (torch.cuda.Event(enable_timing=True)
                          for _ in range(2))
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def copy_bandwidth(device, repeats):
    """Bytes per second of a large tensor copy (read + write)."""
    src = torch.randn(32 * 2**20, device=device)
    dst = torch.empty_like(src)
    seconds = timed(lambda: dst.copy_(src), device, repeats)
    return 2 * src.numel() * 4 / seconds


def fwd_bwd(fn, inputs):
    def run():
        out = fn(*inputs)
        torch.autograd.grad(out, inputs, torch.ones_like(out))
    return run


def bench_case(B, T, C, args, bandwidth):
    dev, dt = args.device, getattr(torch, args.dtype)
    k = torch.randn(B, T, C, device=dev, dtype=dt, requires_grad=True)
    v = torch.randn(B, T, C, device=dev, dtype=dt, requires_grad=True)
    w = (torch.rand(C, device=dev) / T).requires_grad_()
    u = (torch.rand(C, device=dev) / T).requires_grad_()
    row = dict(B=B, T=T, C=C, dtype=args.dtype)
    ms = lambda s: round(s * 1e3, 3)  # noqa: E731
    with torch.no_grad():
        row['compiled_fwd_ms'] = ms(timed(
            lambda: bi_wkv(w, u, k, v, backend='compiled'), dev,
            args.repeats))
    row['compiled_fwdbwd_ms'] = ms(timed(
        fwd_bwd(lambda *x: bi_wkv(*x, backend='compiled'), (w, u, k, v)),
        dev, args.repeats))
    if T <= args.reference_max_tokens:
        with torch.no_grad():
            row['reference_fwd_ms'] = ms(timed(
                lambda: bi_wkv(w, u, k, v, backend='reference'), dev,
                args.repeats))
    if T <= args.sdpa_max_tokens:
        heads = max(1, C // 64)
        q = torch.randn(B, heads, T, C // heads, device=dev, dtype=dt,
                        requires_grad=True)
        sdpa = lambda a: F.scaled_dot_product_attention(a, a, a)  # noqa
        with torch.no_grad():
            row['sdpa_fwd_ms'] = ms(timed(lambda: sdpa(q), dev,
                                          args.repeats))
        row['sdpa_fwdbwd_ms'] = ms(timed(fwd_bwd(sdpa, (q, )), dev,
                                         args.repeats))
    elem = k.element_size()
    # forward reads k, v and writes y; backward reads k, v, dy, writes dk, dv
    row['floor_fwd_ms'] = ms(3 * B * T * C * elem / bandwidth)
    row['floor_fwdbwd_ms'] = ms(8 * B * T * C * elem / bandwidth)
    row['fwd_vs_floor'] = round(row['compiled_fwd_ms'] / row['floor_fwd_ms'],
                                1)
    # the GPU target (issue 5) is on fwd+bwd
    row['fwdbwd_vs_floor'] = round(
        row['compiled_fwdbwd_ms'] / row['floor_fwdbwd_ms'], 1)
    if 'sdpa_fwdbwd_ms' in row:
        row['sdpa_over_compiled_fwdbwd'] = round(
            row['sdpa_fwdbwd_ms'] / row['compiled_fwdbwd_ms'], 1)
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--device', default='cpu')
    p.add_argument('--dtype', default='float32')
    p.add_argument('--batch', type=int, nargs='+', default=[1, 8])
    p.add_argument('--channels', type=int, nargs='+', default=[192, 384, 768])
    p.add_argument('--tokens', type=int, nargs='+',
                   default=[196, 1024, 4096, 16384])
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--reference-max-tokens', type=int, default=1024)
    p.add_argument('--sdpa-max-tokens', type=int, default=4096)
    p.add_argument('--max-elements', type=int, default=2**25,
                   help='skip cases with B*T*C above this')
    p.add_argument('--json', default=None,
                   help="results file (default docs/bench_bi_wkv_"
                   "<device>[_<dtype>].json; '' writes none)")
    args = p.parse_args()
    if args.json is None:
        suffix = '' if args.dtype == 'float32' else f'_{args.dtype}'
        args.json = os.path.join(
            ROOT, 'docs', f'bench_bi_wkv_{args.device}{suffix}.json')
    bandwidth = copy_bandwidth(args.device, args.repeats)
    machine = dict(device=args.device, torch=torch.__version__,
                   threads=torch.get_num_threads(),
                   cpu=platform.processor() or platform.machine(),
                   copy_GBps=round(bandwidth / 1e9, 2))
    if args.device == 'cuda':
        machine['gpu'] = torch.cuda.get_device_name()
    print(machine)
    rows = []
    for B in args.batch:
        for C in args.channels:
            for T in args.tokens:
                if B * T * C > args.max_elements:
                    continue
                row = bench_case(B, T, C, args, bandwidth)
                print(row, flush=True)
                rows.append(row)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(machine=machine, rows=rows), f, indent=1)


if __name__ == '__main__':
    main()
