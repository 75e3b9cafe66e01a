"""Backbone benchmark: inference latency and peak memory of VRWKV6-T and
VRWKV-T/S against mmpretrain's VisionTransformer in DeiT-tiny/small sizes
(patch 16).

VRWKV6 runs Bi-WKV6 through ``mmvrwkv.ops.bi_wkv6`` with its default
backend, whichever implementation that selects on this machine (recorded
as ``bi_wkv6`` in the JSON's machine entry).

All models are built for 224 px and interpolate their position embedding
(bicubic) to each input size, as both backbones do in their forward. Batch 1,
float32, ``torch.no_grad``, eval mode, output = last layer's feature map.

Every case (model x size) runs in two fresh subprocesses (memory first), so
no case sees another's allocations:

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
forward.

Usage:
    python benchmarks/bench_backbone.py [--sizes 224 512 1024 1536 2048]
        [--models vrwkv6_t vrwkv_t deit_t vrwkv_s deit_s] [--repeats 5]
        [--case-budget 30] [--device cpu]
        [--json docs/bench_backbone.json] [--plot docs/bench_backbone.png]
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# name: (registered type, arch); VRWKV* are in mmengine's root registry
MODELS = {
    'vrwkv6_t': ('VRWKV6', 'tiny'),
    'vrwkv_t': ('VRWKV', 'tiny'),
    'deit_t': ('VisionTransformer', 'deit-tiny'),
    'vrwkv_s': ('VRWKV', 'small'),
    'deit_s': ('VisionTransformer', 'deit-small'),
}
MALLOC_ENV = {'MALLOC_MMAP_THRESHOLD_': str(64 * 1024)}


def build(name):
    """The backbone ``name`` of :data:`MODELS`, built for 224 px, eval."""
    from mmengine.registry import MODELS as ROOT_MODELS
    from mmpretrain.models import VisionTransformer

    import mmvrwkv  # noqa: F401  (registers VRWKV and VRWKV6)
    kind, arch = MODELS[name]
    cfg = dict(arch=arch, img_size=224, patch_size=16, out_type='featmap')
    if kind == 'VisionTransformer':
        model = VisionTransformer(**cfg)
    else:
        model = ROOT_MODELS.build(dict(type=kind, **cfg))
    model.eval()  # not chained: VisionTransformer.train() returns None
    return model


def bi_wkv6_info():
    """``bi_wkv6``'s default backend, and whether a compiled Bi-WKV6
    operator is registered (without one, every backend is the PyTorch
    reference)."""
    import inspect

    import torch

    from mmvrwkv.ops import bi_wkv6
    from mmvrwkv.ops.ext_loader import load_ext
    load_ext()  # the extension registers its operators when it loads
    default = inspect.signature(bi_wkv6).parameters['backend'].default
    return dict(default_backend=default,
                compiled_op=hasattr(torch.ops.mmvrwkv, 'bi_wkv6'))


def _status_kb(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status (Linux only)')


def run_case(name, size, mode, repeats, budget, threads, warmup=True,
             device='cpu'):
    """Body of one subprocess: returns the measurements of one case."""
    import torch
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build(name).to(device)
    x = torch.randn(1, 3, size, size, device=device)
    cuda = device == 'cuda'
    out = dict(threads=torch.get_num_threads())

    def forward_seconds():
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        model(x)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    with torch.no_grad():
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
            base = _status_kb('VmRSS')
            out['memory_run_s'] = forward_seconds()
            out['peak_mb'] = (_status_kb('VmHWM') - base) / 1024
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


def spawn(name, size, mode, args, warmup=True):
    env = dict(os.environ, **(MALLOC_ENV if mode == 'memory' else {}))
    cmd = [sys.executable, __file__, '--_case', name, str(size), mode,
           '--repeats', str(args.repeats), '--case-budget',
           str(args.case_budget), '--threads', str(args.threads),
           '--device', args.device]
    if not warmup:
        cmd.append('--no-warmup')
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f'case {name} {size} {mode} failed:\n'
                           + res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def load_average():
    return [round(v, 2) for v in os.getloadavg()]


def plot(result, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = result['rows']
    names = list(dict.fromkeys(r['model'] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label in ((axes[0], 'latency_ms', 'latency (ms)'),
                           (axes[1], 'peak_mb', 'forward peak memory (MB)')):
        for name in names:
            pts = sorted((r['tokens'], r[key]) for r in rows
                         if r['model'] == name and key in r)
            if not pts:
                continue
            t, y = zip(*pts)
            line, = ax.plot(t, y, 'o-', label=name)
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
        ax.set_ylabel(label)
        ax.grid(True, which='both', alpha=0.3)
        ax.legend(fontsize=8)
    m = result['machine']
    where = m.get('gpu') or f"{m['threads']} threads, {m['cpu']}"
    fig.suptitle(f"batch 1, fp32, {where}, "
                 f"load {m['load_before'][0]}-{m['load_after'][0]}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def print_table(rows, sizes, names):
    by = {(r['model'], r['size']): r for r in rows}
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
                                  not args.no_warmup, args.device)))
        return
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = dict(torch=torch.__version__, threads=torch.get_num_threads(),
                   cpu=platform.processor() or platform.machine(),
                   device=args.device, load_before=load_average())
    if args.device == 'cuda':
        machine['gpu'] = torch.cuda.get_device_name()
    if any(MODELS[n][0] == 'VRWKV6' for n in args.models):
        machine['bi_wkv6'] = bi_wkv6_info()
    print(machine, flush=True)
    rows = []
    for size in args.sizes:
        for name in args.models:
            row = dict(model=name, size=size, tokens=(size // 16)**2,
                       load=load_average())
            warmup = True
            if not args.skip_memory:
                row.update(spawn(name, size, 'memory', args))
                # a forward slower than the budget needs no warm-up run
                warmup = row['memory_run_s'] < args.case_budget
            row.update(spawn(name, size, 'latency', args, warmup))
            row['warmup'] = warmup
            print(row, flush=True)
            rows.append(row)
    machine['load_after'] = load_average()
    result = dict(machine=machine, rows=rows)
    print_table(rows, args.sizes, args.models)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)
    if args.plot:
        plot(result, args.plot)


if __name__ == '__main__':
    main()
