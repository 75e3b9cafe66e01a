"""Eager against ``torch.compile`` (inductor, ``fullgraph=True``) on this
CPU, measured side by side in one process:

* VRWKV-T backbone inference (batch 1, float32, ``torch.no_grad``) at 224 and
  1024 px;
* one Mask R-CNN training iteration (``configs/mask_rcnn_vrwkv_t.py``,
  VRWKV-Adapter-T, the synthetic batch of ``bench_train_step.py``) with the
  backbone and neck compiled; the heads stay eager (mmdet's RoI sampling and
  target assignment branch on data, so they are not fullgraph-compilable);
* the standard-operator backend (``wkv_backend='chunked'``: no compiled
  kernel) against the compiled kernel, VRWKV-T and VRWKV6-T backbones at
  224 px, inference and a forward + backward pass, each eager and under
  ``torch.compile`` (same weights; ``--chunked-sizes``).

Each case: the first call of the compiled module is the compile time; then
eager and compiled calls alternate (``--repeats`` rounds, median), so both
see the same machine load. The outputs (losses) are compared too.

Usage:
    python benchmarks/bench_compile.py [--sizes 224 1024] [--repeats 5]
        [--det-size 800 1333] [--threads 0] [--json docs/bench_compile.json]
"""
import argparse
import os
import statistics
import time

import torch

from bench_train_step import CONFIG, ROOT, build_model, synthetic_batch
from report import load_average, machine_info, print_table, write_json


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def alternate(fns, repeats):
    """Median seconds of each callable, called in alternation."""
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(_timed(fn)[0])
    return {k: statistics.median(v) for k, v in times.items()}


def bench_backbone(size, repeats):
    from mmvrwkv.models import VRWKV
    torch.manual_seed(0)
    model = VRWKV(arch='tiny', img_size=224).eval()
    compiled = torch.compile(model, fullgraph=True)
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        eager_out = model(x)[0]
        compile_s, out = _timed(lambda: compiled(x)[0])
        err = ((out - eager_out).abs().max() /
               eager_out.abs().max()).item()
        times = alternate(dict(eager=lambda: model(x),
                               compiled=lambda: compiled(x)), repeats)
    return dict(case=f'VRWKV-T {size}px inference',
                eager_ms=round(times['eager'] * 1e3, 1),
                compiled_ms=round(times['compiled'] * 1e3, 1),
                speedup=round(times['eager'] / times['compiled'], 2),
                compile_s=round(compile_s, 1), max_rel_diff=err)


def bench_chunked(arch, size, repeats):
    """The chunked backend against the compiled kernel, eager and
    compiled, inference and forward + backward."""
    from mmvrwkv.models import VRWKV, VRWKV6
    kind = dict(VRWKV=VRWKV, VRWKV6=VRWKV6)[arch]
    models = {}
    for backend in ('compiled', 'chunked'):
        torch.manual_seed(0)
        models[backend] = kind(arch='tiny', wkv_backend=backend).eval()
    x = torch.randn(1, 3, size, size)
    rows = []
    for mode in ('inference', 'fwd+bwd'):
        fns, compile_s, outs = {}, {}, {}
        for backend, model in models.items():
            for compiled in (False, True):
                name = f'{backend}{"_compiled" if compiled else ""}'
                torch._dynamo.reset()
                fn = torch.compile(model, fullgraph=True) if compiled \
                    else model

                def run(fn=fn, model=model):
                    if mode == 'inference':
                        with torch.no_grad():
                            return fn(x)[0]
                    model.zero_grad(set_to_none=True)
                    out = fn(x)[0]
                    out.square().mean().backward()
                    return out.detach()

                compile_s[name], outs[name] = _timed(run)
                fns[name] = run
        times = alternate(fns, repeats)
        ref = outs['compiled']
        rows.append(dict(
            case=f'{arch}-T {size}px {mode}, chunked vs kernel',
            **{f'{k}_ms': round(v * 1e3, 1) for k, v in times.items()},
            compile_s=round(compile_s['chunked_compiled'], 1),
            max_rel_diff=max(((o - ref).abs().max() /
                              ref.abs().max()).item()
                             for o in outs.values())))
    return rows


def bench_mask_rcnn(h, w, repeats):
    from mmengine.optim import OptimWrapper
    torch.manual_seed(0)
    model = build_model(CONFIG)
    batch = synthetic_batch(h, w)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    eager_backbone, eager_neck = model.backbone, model.neck
    compiled_backbone = torch.compile(eager_backbone, fullgraph=True)
    compiled_neck = torch.compile(eager_neck, fullgraph=True)
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-4))

    def step(compiled):
        # same weights for every step, so that the losses are comparable
        model.backbone, model.neck = eager_backbone, eager_neck
        model.load_state_dict(state)
        if compiled:
            model.backbone, model.neck = compiled_backbone, compiled_neck
        torch.manual_seed(0)
        return model.train_step(batch, optim)['loss'].item()

    eager_loss = step(False)
    compile_s, loss = _timed(lambda: step(True))
    times = alternate(dict(eager=lambda: step(False),
                           compiled=lambda: step(True)), repeats)
    return dict(case=f'Mask R-CNN train step {w}x{h} (backbone+neck '
                'compiled)',
                eager_ms=round(times['eager'] * 1e3, 1),
                compiled_ms=round(times['compiled'] * 1e3, 1),
                speedup=round(times['eager'] / times['compiled'], 2),
                compile_s=round(compile_s, 1),
                max_rel_diff=abs(loss - eager_loss) / abs(eager_loss))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--sizes', type=int, nargs='+', default=[224, 1024])
    p.add_argument('--det-size', type=int, nargs=2, default=[800, 1333],
                   metavar=('H', 'W'))
    p.add_argument('--no-det', action='store_true')
    p.add_argument('--chunked-sizes', type=int, nargs='*', default=[224],
                   help="sizes of the wkv_backend='chunked' rows (none: "
                   'skip them)')
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--threads', type=int, default=0)
    p.add_argument('--json',
                   default=os.path.join(ROOT, 'docs', 'bench_compile.json'),
                   help="results file ('' writes none)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = machine_info()
    print(machine, flush=True)
    rows = [bench_backbone(s, args.repeats) for s in args.sizes]
    for r in rows:
        print(r, flush=True)
    if not args.no_det:
        rows.append(bench_mask_rcnn(*args.det_size, max(2, args.repeats // 2)))
        print(rows[-1], flush=True)
    chunked = []
    for arch in ('VRWKV', 'VRWKV6'):
        for size in args.chunked_sizes:
            chunked += bench_chunked(arch, size, args.repeats)
            print(chunked[-2:], flush=True)
    machine['load_after'] = load_average()
    print_table(['case', 'eager ms', 'compiled ms', 'speed-up', 'compile s'],
                [[r['case'], r['eager_ms'], r['compiled_ms'], r['speedup'],
                  r['compile_s']] for r in rows])
    if chunked:
        print_table(
            ['case', 'kernel ms', 'kernel compiled ms', 'chunked ms',
             'chunked compiled ms', 'compile s (chunked)'],
            [[r['case'], r['compiled_ms'], r['compiled_compiled_ms'],
              r['chunked_ms'], r['chunked_compiled_ms'], r['compile_s']]
             for r in chunked])
    rows += chunked
    write_json(args.json, machine, rows)


if __name__ == '__main__':
    main()
