"""Peak CPU memory of one training step (forward + backward, batch 1,
float32) of VRWKV-Adapter-L, with and without gradient checkpointing
(``with_cp``).

Each measurement runs in its own subprocess and reports the process's peak
resident memory (``ru_maxrss``) and the part of it above the memory held
after the model is built (parameters, before gradients). A watchdog thread
ends a child whose resident memory passes ``--limit-gb``, so a size that
does not fit is reported as such instead of exhausting a shared machine.

Usage:
    python benchmarks/bench_with_cp_memory.py --sizes 320x192 640x384 \
        1333x800 --limit-gb 6 [--json out.json]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time

EXCEEDED = 3


def rss_gb() -> float:
    with open('/proc/self/statm') as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf('SC_PAGE_SIZE') / 2**30


def watchdog(limit_gb: float) -> None:
    def watch():
        while True:
            if rss_gb() > limit_gb:
                print(json.dumps(dict(exceeded_gb=limit_gb)), flush=True)
                os._exit(EXCEEDED)
            time.sleep(0.01)
    threading.Thread(target=watch, daemon=True).start()


def child(width: int, height: int, with_cp: bool, arch: str,
          limit_gb: float) -> None:
    watchdog(limit_gb)
    import torch
    import mmvrwkv  # noqa: F401
    from mmvrwkv.models import VRWKVAdapter
    torch.manual_seed(0)
    model = VRWKVAdapter(arch=arch, img_size=192, with_cp=with_cp,
                         norm_cfg=dict(type='BN', requires_grad=True))
    model.train()
    x = torch.randn(1, 3, height, width)
    built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    start = time.perf_counter()
    outs = model(x)
    sum(o.float().square().mean() for o in outs).backward()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(json.dumps(dict(size=f'{width}x{height}', with_cp=with_cp,
                          arch=arch, params_m=round(params, 1),
                          peak_gb=round(peak, 2),
                          step_gb=round(peak - built, 2),
                          seconds=round(seconds, 1))), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', nargs='+', default=['320x192'],
                        help='WxH, e.g. 1333x800')
    parser.add_argument('--arch', default='large')
    parser.add_argument('--limit-gb', type=float, default=6.0)
    parser.add_argument('--json', help='write the results here')
    parser.add_argument('--child', nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        w, h, cp = args.child
        child(int(w), int(h), cp == '1', args.arch, args.limit_gb)
        return
    results = []
    for size in args.sizes:
        w, h = size.split('x')
        for cp in ('1', '0'):
            proc = subprocess.run(
                [sys.executable, __file__, '--arch', args.arch,
                 '--limit-gb', str(args.limit_gb), '--child', w, h, cp],
                capture_output=True, text=True)
            if proc.returncode == EXCEEDED:
                row = dict(size=size, with_cp=cp == '1', arch=args.arch,
                           peak_gb=f'> {args.limit_gb}', step_gb=None)
            elif proc.returncode:
                raise RuntimeError(proc.stderr[-2000:])
            else:
                row = json.loads(proc.stdout.strip().splitlines()[-1])
            print(row, flush=True)
            results.append(row)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
