"""Backbone benchmark: inference latency and peak memory of VRWKV6-T and
VRWKV-T/S against DeiT-tiny/small (patch 16).

VRWKV and VRWKV6 are ``mmvrwkv.models.VRWKV`` / ``VRWKV6`` built directly;
VRWKV6 runs Bi-WKV6 through ``mmvrwkv.ops.bi_wkv6`` with its default
backend, whichever implementation that selects on this machine (recorded
as ``bi_wkv6`` in the JSON's machine entry). DeiT is mmpretrain's
``VisionTransformer`` (``arch='deit-tiny'`` / ``'deit-small'``) where
mmpretrain imports, else :class:`PlainViT`, the same network in plain
PyTorch (``--deit-impl``; recorded as ``deit``).

All models are built for 224 px and interpolate their position embedding
(bicubic) to each input size, as both backbones do in their forward. Batch 1,
``torch.no_grad``, eval mode, output = last layer's feature map; float32,
or each dtype of ``--dtype`` (bfloat16: the forward under
``torch.autocast``, as mixed-precision training and inference run it).

By default every case (model x size x dtype) runs in two fresh
subprocesses (memory first), so no case sees another's allocations:

* latency: one warm-up forward (skipped when the memory run's single
  forward already took longer than ``--case-budget`` seconds), then up to
  ``--repeats`` timed forwards (median), stopping early once
  ``--case-budget`` seconds are spent (at least one timed run is always
  taken; the number used is recorded);
* memory: one forward with glibc's ``MALLOC_MMAP_THRESHOLD_`` fixed at
  64 KiB, so every tensor buffer is its own mapping and is returned to the OS
  when freed; the resident set then tracks live memory. The peak is read
  from ``VmHWM`` after resetting it (``/proc/self/clear_refs``) once the
  model and input exist: ``peak_mb`` is the forward's extra peak over that
  baseline (activations and workspaces, not weights); ``weights_mb`` is the
  parameter size. Linux only.

With ``--device cuda`` (what ``tools/gpu_check.sh`` runs) the model and
input live on the GPU, each forward is timed between two
``torch.cuda.synchronize()`` calls, and ``peak_mb`` is the rise of
``torch.cuda.max_memory_allocated()`` over the memory allocated before the
forward. The allocator's counters reset per case, so ``--in-process`` runs
every case in this process (one CUDA start instead of two per case); on the
CPU it gives only a rough peak (freed memory stays in glibc's heap).

A case that fails (out of memory, say) is recorded with its ``error`` and
the others still run; the exit status is then 1. ``--budget`` stops
starting cases once spent; the JSON is rewritten after every case.

Usage:
    python benchmarks/bench_backbone.py [--sizes 224 512 1024 1536 2048]
        [--models vrwkv6_t vrwkv_t deit_t vrwkv_s deit_s] [--repeats 5]
        [--case-budget 30] [--device cpu] [--dtype float32 [bfloat16]]
        [--in-process] [--budget SECONDS] [--deit-impl auto]
        [--json docs/bench_backbone.json] [--plot docs/bench_backbone.png]
"""
import argparse
import contextlib
import gc
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from report import (MEMORY_ENV, cpu_name, gpu_info, load_average, status_kb,
                    write_json)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# name: (model, arch)
MODELS = {
    'vrwkv6_t': ('VRWKV6', 'tiny'),
    'vrwkv_t': ('VRWKV', 'tiny'),
    'deit_t': ('DeiT', 'deit-tiny'),
    'vrwkv_s': ('VRWKV', 'small'),
    'deit_s': ('DeiT', 'deit-small'),
}
# mmpretrain's DeiT presets: embed dims, layers, heads, MLP width
DEIT_ARCHS = {'deit-tiny': (192, 12, 3, 768), 'deit-small': (384, 12, 6, 1536)}
DTYPES = ('float32', 'bfloat16', 'float16')


class _Attention(nn.Module):

    def __init__(self, dims, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dims, dims * 3)
        self.proj = nn.Linear(dims, dims)

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.heads,
                                      C // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class _FFN(nn.Module):

    def __init__(self, dims, hidden):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Sequential(nn.Linear(dims, hidden), nn.GELU()),
            nn.Linear(hidden, dims))

    def forward(self, x, identity):
        return identity + self.layers(x)


class _Block(nn.Module):

    def __init__(self, dims, heads, hidden):
        super().__init__()
        self.ln1 = nn.LayerNorm(dims, eps=1e-6)
        self.attn = _Attention(dims, heads)
        self.ln2 = nn.LayerNorm(dims, eps=1e-6)
        self.ffn = _FFN(dims, hidden)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return self.ffn(self.ln2(x), identity=x)


class PlainViT(nn.Module):
    """DeiT's ViT in plain PyTorch: mmpretrain's ``VisionTransformer(arch=
    'deit-tiny' or 'deit-small', out_type='featmap')`` for machines without
    mmpretrain, with its parameter names (either loads the other's state
    dict) and its forward: patch embedding (a 16 x 16 convolution, the
    input zero-padded at the bottom and right to a multiple of 16), class
    token, position embedding resized bicubically to the input's patch
    grid, pre-norm blocks (LayerNorm, multi-head self-attention through
    ``F.scaled_dot_product_attention``, LayerNorm, MLP with GELU), a final
    LayerNorm; returns ``(featmap,)``, featmap (B, C, H / 16, W / 16).

    Args:
        arch (str): 'deit-tiny' (192 wide, 12 layers, 3 heads, MLP 768)
            or 'deit-small' (384, 12, 6, 1536). Defaults to 'deit-tiny'.
        img_size (int): the size the position embedding is made for.
            Defaults to 224.
        patch_size (int): Defaults to 16.
    """

    def __init__(self, arch='deit-tiny', img_size=224, patch_size=16):
        super().__init__()
        if arch not in DEIT_ARCHS:
            raise ValueError(f'arch {arch!r} is not one of: '
                             + ', '.join(DEIT_ARCHS))
        dims, layers, heads, hidden = DEIT_ARCHS[arch]
        self.patch_size = patch_size
        self.patch_resolution = (img_size // patch_size, ) * 2
        self.patch_embed = nn.Module()
        self.patch_embed.projection = nn.Conv2d(3, dims, patch_size,
                                                patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dims))
        self.pos_embed = nn.Parameter(
            torch.zeros(1, 1 + self.patch_resolution[0]**2, dims))
        self.layers = nn.ModuleList(
            _Block(dims, heads, hidden) for _ in range(layers))
        self.ln1 = nn.LayerNorm(dims, eps=1e-6)
        for p in (self.cls_token, self.pos_embed):
            nn.init.trunc_normal_(p, std=0.02)

    def forward(self, x):
        p = self.patch_size
        x = F.pad(x, (0, -x.shape[3] % p, 0, -x.shape[2] % p))
        x = self.patch_embed.projection(x)
        hw = x.shape[2:]
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1),
                       x.flatten(2).transpose(1, 2)], dim=1)
        pos = self.pos_embed
        if tuple(hw) != self.patch_resolution:
            grid = pos[:, 1:].reshape(1, *self.patch_resolution, -1)
            grid = F.interpolate(grid.permute(0, 3, 1, 2).float(), size=hw,
                                 mode='bicubic', align_corners=False)
            pos = torch.cat([pos[:, :1], grid.flatten(2).transpose(1, 2).to(
                pos.dtype)], dim=1)
        x = x + pos
        for layer in self.layers:
            x = layer(x)
        x = self.ln1(x)[:, 1:]
        return (x.reshape(x.shape[0], *hw, -1).permute(0, 3, 1, 2), )


def deit_impl(choice='auto'):
    """'mmpretrain' or 'plain': which DeiT ``choice`` ('auto': mmpretrain
    where it is installed) builds."""
    if choice == 'auto':
        found = importlib.util.find_spec('mmpretrain') is not None
        return 'mmpretrain' if found else 'plain'
    return choice


def build(name, impl='auto'):
    """The backbone ``name`` of :data:`MODELS`, built for 224 px, eval;
    DeiT from ``impl`` (:func:`deit_impl`)."""
    kind, arch = MODELS[name]
    cfg = dict(arch=arch, img_size=224, patch_size=16)
    if kind == 'DeiT':
        if deit_impl(impl) == 'plain':
            model = PlainViT(**cfg)
        else:
            from mmpretrain.models import VisionTransformer
            model = VisionTransformer(out_type='featmap', **cfg)
    else:
        from mmvrwkv.models import VRWKV, VRWKV6
        model = dict(VRWKV=VRWKV, VRWKV6=VRWKV6)[kind](out_type='featmap',
                                                       **cfg)
    model.eval()  # not chained: VisionTransformer.train() returns None
    return model


def bi_wkv6_info():
    """``bi_wkv6``'s default backend, and whether a compiled Bi-WKV6
    operator is registered (without one, every backend is the PyTorch
    reference)."""
    import inspect

    from mmvrwkv.ops import bi_wkv6
    from mmvrwkv.ops.common import load_ext
    load_ext()  # the extension registers its operators when it loads
    default = inspect.signature(bi_wkv6).parameters['backend'].default
    return dict(default_backend=default,
                compiled_op=hasattr(torch.ops.mmvrwkv, 'bi_wkv6'))


def run_case(name, size, mode, repeats, budget, threads, warmup=True,
             device='cpu', dtype='float32', impl='auto'):
    """One case's measurements ('memory' or 'latency' ``mode``): the body
    of a subprocess, or called in this process with ``--in-process``."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build(name, impl).to(device)
    x = torch.randn(1, 3, size, size, device=device)
    cuda = torch.device(device).type == 'cuda'
    out = dict(threads=torch.get_num_threads())
    precision = contextlib.nullcontext() if dtype == 'float32' else \
        torch.autocast(torch.device(device).type, getattr(torch, dtype))

    def forward_seconds():
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        model(x)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    with torch.no_grad(), precision:
        if mode == 'memory':
            out['weights_mb'] = sum(
                p.numel() * p.element_size()
                for p in model.parameters()) / 2**20
            if cuda:
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated() / 2**20
                out['memory_run_s'] = forward_seconds()
                out['peak_mb'] = torch.cuda.max_memory_allocated() / 2**20 \
                    - base
                return out
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')  # reset VmHWM to the current resident set
            base = status_kb('VmRSS')
            out['memory_run_s'] = forward_seconds()
            out['peak_mb'] = (status_kb('VmHWM') - base) / 1024
            return out
        if warmup:
            model(x)
        times, spent = [], 0.
        while len(times) < repeats and (not times or spent < budget):
            times.append(forward_seconds())
            spent += times[-1]
        out['latency_ms'] = statistics.median(times) * 1e3
        out['timed_runs'] = len(times)
    return out


def spawn(name, size, mode, args, warmup=True, dtype='float32'):
    if args.in_process:
        try:
            return run_case(name, size, mode, args.repeats,
                            args.case_budget, args.threads, warmup,
                            args.device, dtype, args.deit_impl)
        finally:
            gc.collect()
            if torch.device(args.device).type == 'cuda':
                torch.cuda.empty_cache()
    env = dict(os.environ, **(MEMORY_ENV if mode == 'memory' else {}))
    cmd = [sys.executable, __file__, '--_case', name, str(size), mode,
           '--repeats', str(args.repeats), '--case-budget',
           str(args.case_budget), '--threads', str(args.threads),
           '--device', args.device, '--dtype', dtype, '--deit-impl',
           args.deit_impl]
    if not warmup:
        cmd.append('--no-warmup')
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f'case {name} {size} {mode} failed:\n'
                           + res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def plot(result, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = result['rows']
    # one line per model and dtype; float32 alone keeps the model's name
    label = lambda r: r['model'] if r.get('dtype', 'float32') == 'float32' \
        else f"{r['model']} {r['dtype']}"  # noqa: E731
    names = list(dict.fromkeys(label(r) for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, title in ((axes[0], 'latency_ms', 'latency (ms)'),
                           (axes[1], 'peak_mb', 'forward peak memory (MB)')):
        for name in names:
            pts = sorted((r['tokens'], r[key]) for r in rows
                         if label(r) == name and key in r)
            if not pts:
                continue
            t, y = zip(*pts)
            ax.plot(t, y, 'o-', label=name)
            # reference curves through the model's smallest case
            ts = [t[0] * s for s in (1, 2, 4, 8, 16, 32, 64, 128)
                  if t[0] * s <= t[-1] * 1.01] + [t[-1]]
            if name == names[0]:
                ax.plot(ts, [y[0] * v / t[0] for v in ts], ':', color='gray',
                        label='linear in T')
                ax.plot(ts, [y[0] * (v / t[0])**2 for v in ts], '--',
                        color='gray', label='quadratic in T')
        ax.set_xscale('log')
        ax.set_yscale('log')
        ax.set_xlabel('tokens T = (px / 16)^2')
        ax.set_ylabel(title)
        ax.grid(True, which='both', alpha=0.3)
        ax.legend(fontsize=8)
    m = result['machine']
    where = m.get('gpu') or f"{m['threads']} threads, {m['cpu']}"
    dtypes = ', '.join(dict.fromkeys(r.get('dtype', 'float32') for r in rows))
    fig.suptitle(f"batch 1, {dtypes}, {where}, "
                 f"load {m['load_before'][0]}-{m['load_after'][0]}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def print_table(rows, sizes, names, dtype='float32'):
    by = {(r['model'], r['size']): r for r in rows
          if r.get('dtype', 'float32') == dtype}
    head = ['px', 'T'] + [f'{n} ms' for n in names] + \
        [f'{n} MB' for n in names] + ['load (1 min)']
    print('| ' + ' | '.join(head) + ' |')
    print('|' + '---|' * len(head))
    for s in sizes:
        cells = [str(s), str((s // 16)**2)]
        for key, fmt in (('latency_ms', '{:.1f}'), ('peak_mb', '{:.0f}')):
            for n in names:
                r = by.get((n, s), {})
                cells.append(fmt.format(r[key]) if key in r else '–')
        loads = [by[(n, s)]['load'][0] for n in names if (n, s) in by]
        cells.append(f'{min(loads)}-{max(loads)}' if loads else '–')
        print('| ' + ' | '.join(cells) + ' |')


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--models', nargs='+', default=list(MODELS),
                   choices=list(MODELS))
    p.add_argument('--sizes', type=int, nargs='+',
                   default=[224, 512, 1024, 1536, 2048])
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--case-budget', type=float, default=30.,
                   help='stop timing a case after this many seconds')
    p.add_argument('--threads', type=int, default=0,
                   help='torch threads per case (0: torch default)')
    p.add_argument('--skip-memory', action='store_true')
    p.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    p.add_argument('--dtype', nargs='+', default=['float32'], choices=DTYPES,
                   help='float32, or autocast to bfloat16 / float16')
    p.add_argument('--in-process', action='store_true',
                   help='every case in this process (GPU: exact peaks)')
    p.add_argument('--deit-impl', default='auto',
                   choices=['auto', 'mmpretrain', 'plain'])
    p.add_argument('--budget', type=float, default=0,
                   help='seconds; no case starts once spent (0: no limit)')
    p.add_argument('--json',
                   default=os.path.join(ROOT, 'docs', 'bench_backbone.json'),
                   help="results file ('' writes none)")
    p.add_argument('--plot', help='PNG of latency/memory vs tokens')
    p.add_argument('--_case', nargs=3, help=argparse.SUPPRESS)
    p.add_argument('--no-warmup', action='store_true', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._case:
        name, size, mode = args._case
        print(json.dumps(run_case(name, int(size), mode, args.repeats,
                                  args.case_budget, args.threads,
                                  not args.no_warmup, args.device,
                                  args.dtype[0], args.deit_impl)))
        return
    start = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = dict(torch=torch.__version__, threads=torch.get_num_threads(),
                   cpu=cpu_name(),
                   device=args.device, load_before=load_average())
    machine.update(gpu_info(args.device))
    if any(MODELS[n][0] == 'DeiT' for n in args.models):
        machine['deit'] = deit_impl(args.deit_impl)
    if args.in_process:
        machine['in_process'] = True
    if any(MODELS[n][0] == 'VRWKV6' for n in args.models):
        machine['bi_wkv6'] = bi_wkv6_info()
    print(machine, flush=True)
    rows, failed, cut_short = [], False, False
    for dtype in args.dtype:
        for size in args.sizes:
            for name in args.models:
                if args.budget and time.perf_counter() - start > args.budget:
                    cut_short = True
                    continue
                row = dict(model=name, size=size, tokens=(size // 16)**2,
                           load=load_average())
                row['dtype'] = dtype
                try:
                    warmup = True
                    if not args.skip_memory:
                        row.update(spawn(name, size, 'memory', args,
                                         dtype=dtype))
                        # a forward slower than the budget needs no warm-up
                        warmup = row['memory_run_s'] < args.case_budget
                    row.update(spawn(name, size, 'latency', args, warmup,
                                     dtype))
                    row['warmup'] = warmup
                except Exception as error:  # out of memory, say
                    row['error'] = str(error).strip().splitlines()[-1]
                    failed = True
                print(row, flush=True)
                rows.append(row)
                write_json(args.json, machine, rows)
    machine['load_after'] = load_average()
    if args.budget:
        machine.update(budget_s=args.budget, cut_short=cut_short)
    result = dict(machine=machine, rows=rows)
    for dtype in args.dtype:
        if len(args.dtype) > 1:
            print(f'\n{dtype}:')
        print_table(rows, args.sizes, args.models, dtype)
    write_json(args.json, machine, rows)
    if args.plot and any('latency_ms' in r for r in rows):
        plot(result, args.plot)
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    main()
