"""MAE pre-training benchmark: a training step (masked encoder, decoder,
MAEPretrainHead's loss, forward and backward) of MAE-VRWKV-B against
mmpretrain's MAE-ViT-B, and each encoder on the visible quarter of the
tokens against the same encoder on all of them, in one run on this CPU.

Models (random weights, batch 1, float32, mask ratio 0.75, the recipes of
configs/mae and mmpretrain's ``mae_vit-base-p16``):

* ``vrwkv_b``: MAEVRWKV (arch 'base', 'grid' sparse-input mode, the
  default) and VRWKVMAEDecoder (8 VRWKV blocks of width 512);
* ``vrwkv_b_official``: the same in the 'official' sparse-input mode;
* ``vit_b``: mmpretrain's MAEViT ('b') and MAEPretrainDecoder (8 ViT
  blocks of width 512, 16 heads).

Cases, per model and image size (``--sizes``, default 224 448 896):

* ``step``: ``MAE.loss`` then backward: time and peak memory;
* ``encoder_masked``: the encoder's forward and backward on the visible
  tokens (mask ratio 0.75);
* ``encoder_full``: the same encoder's forward and backward on all tokens
  (``mask=None``, as fine-tuning runs it). ``masked / full`` is the saving
  of a sparse input: 0.25 if the cost were linear in the tokens.

Every case runs in two fresh subprocesses, memory first (the method of
``bench_backbone.py``: glibc's mmap threshold at 64 KiB so freed buffers go
back to the OS, and ``VmHWM`` reset once the model and input exist, so
``peak_mb`` is the step's extra peak over that baseline), then latency (one
warm-up, then up to ``--repeats`` timed runs, median, within
``--case-budget`` seconds). Linux only.

Usage:
    python benchmarks/bench_mae.py [--sizes 224 448 896] [--repeats 3]
        [--threads N] [--json docs/bench_mae.json]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

from report import (MEMORY_ENV, load_average, machine_info, print_table,
                    status_kb, write_json)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ('vrwkv_b', 'vrwkv_b_official', 'vit_b')
CASES = ('step', 'encoder_masked', 'encoder_full')


def build(name, size):
    """The MAE model of ``name`` for ``size`` px images."""
    import mmpretrain.models  # noqa: F401  registers MAE, MAEViT, ...
    from mmpretrain.registry import MODELS as REGISTRY

    import mmvrwkv  # noqa: F401
    patches = (size // 16)**2
    if name.startswith('vrwkv_b'):
        mode = 'official' if name.endswith('official') else 'grid'
        backbone = dict(type='MAEVRWKV', arch='base', img_size=size,
                        mask_ratio=0.75, mask_mode=mode)
        neck = dict(type='VRWKVMAEDecoder', num_patches=patches,
                    embed_dim=768, decoder_embed_dim=512, decoder_depth=8,
                    mask_mode=mode)
    else:
        backbone = dict(type='MAEViT', arch='b', img_size=size,
                        mask_ratio=0.75)
        neck = dict(type='MAEPretrainDecoder', num_patches=patches,
                    embed_dim=768, decoder_embed_dim=512, decoder_depth=8,
                    decoder_num_heads=16)
    model = REGISTRY.build(dict(
        type='MAE', backbone=backbone, neck=neck,
        head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=16,
                  loss=dict(type='PixelReconstructionLoss',
                            criterion='L2'))))
    model.init_weights()
    return model.train()


def step_fn(model, case, x):
    """One step of ``case`` on ``x``: forward and backward."""
    if case == 'step':
        def run():
            model.zero_grad(set_to_none=True)
            model.loss(x, [])['loss'].backward()
    else:
        mask = True if case == 'encoder_masked' else None

        def run():
            model.zero_grad(set_to_none=True)
            out = model.backbone(x, mask=mask)
            out[0].float().square().mean().backward()
    return run


def run_case(name, size, case, mode, repeats, budget):
    """The body of one subprocess: 'memory' or 'latency' of one case."""
    torch.manual_seed(0)
    model = build(name, size)
    x = torch.randn(1, 3, size, size)
    run = step_fn(model, case, x)
    if mode == 'memory':
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # reset VmHWM to the current resident set
        base = status_kb('VmRSS')
        t0 = time.perf_counter()
        run()
        return dict(peak_mb=(status_kb('VmHWM') - base) / 1024,
                    memory_run_s=time.perf_counter() - t0)
    run()  # warm-up
    times, spent = [], 0.
    while len(times) < repeats and (not times or spent < budget):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
        spent += times[-1]
    return dict(ms=statistics.median(times) * 1e3, timed_runs=len(times))


def spawn(name, size, case, mode, args):
    code = ('import json, sys, torch; sys.path.insert(0, {here!r}); '
            'import bench_mae as b; torch.set_num_threads({threads}); '
            'print(json.dumps(b.run_case({name!r}, {size}, {case!r}, '
            '{mode!r}, {repeats}, {budget})))').format(
                here=os.path.dirname(os.path.abspath(__file__)),
                threads=args.threads or torch.get_num_threads(), name=name,
                size=size, case=case, mode=mode, repeats=args.repeats,
                budget=args.case_budget)
    env = dict(os.environ, **(MEMORY_ENV if mode == 'memory' else {}))
    proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if proc.returncode:
        return dict(error=proc.stderr.strip().splitlines()[-1][-300:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--models', nargs='+', default=list(MODELS),
                   choices=MODELS)
    p.add_argument('--sizes', type=int, nargs='+', default=[224, 448, 896])
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--case-budget', type=float, default=60.,
                   help='seconds of timed runs per case (default 60)')
    p.add_argument('--threads', type=int, default=0)
    p.add_argument('--json', default=os.path.join(ROOT, 'docs',
                                                  'bench_mae.json'),
                   help="results file ('' writes none)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = machine_info()
    rows = []
    for size in args.sizes:
        for name in args.models:
            for case in CASES:
                row = dict(model=name, size=size, case=case,
                           tokens=(size // 16)**2)
                row.update(spawn(name, size, case, 'memory', args))
                row.update(spawn(name, size, case, 'latency', args))
                rows.append(row)
                print(json.dumps(row), flush=True)
                machine['load_after'] = load_average()
                write_json(args.json, machine, rows)
    by = {(r['model'], r['size'], r['case']): r for r in rows}
    table = []
    for size in args.sizes:
        for name in args.models:
            step, masked, full = (by[(name, size, c)] for c in CASES)
            ratio = masked.get('ms', float('nan')) / full.get(
                'ms', float('nan'))
            table.append([name, size, f"{step.get('ms', float('nan')):.0f}",
                          f"{step.get('peak_mb', float('nan')):.0f}",
                          f"{masked.get('ms', float('nan')):.0f}",
                          f"{full.get('ms', float('nan')):.0f}",
                          f'{ratio:.2f}'])
    print_table(['model', 'px', 'step ms', 'step peak MB',
                 'encoder masked ms', 'encoder full ms', 'masked / full'],
                table)
    if any('error' in r for r in rows):
        sys.exit(1)


if __name__ == '__main__':
    main()
