"""Peak CPU memory of one training step (forward + backward, batch 1,
float32) of VRWKV-Adapter-L, alone or in the full Mask R-CNN of
configs/mask_rcnn_vrwkv_l.py (``--detector``), with and without gradient
checkpointing (``with_cp``).

Each measurement runs in its own subprocess and reports the process's peak
resident memory (``ru_maxrss``) and the part of it above the memory held
after the model is built (parameters, before gradients). A watchdog thread
ends a child whose resident memory passes ``--limit-gb``, so a size that
does not fit is reported as such instead of exhausting a shared machine.

Usage:
    python benchmarks/bench_with_cp_memory.py --sizes 320x192 640x384 \
        1333x800 --limit-gb 6 [--detector] [--json out.json]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


def build_backbone(arch: str, with_cp: bool):
    from mmvrwkv.models import VRWKVAdapter
    return VRWKVAdapter(arch=arch, img_size=192, with_cp=with_cp,
                        norm_cfg=dict(type='BN', requires_grad=True))


def backbone_step(model, width: int, height: int):
    outs = model(torch.randn(1, 3, height, width))
    sum(o.float().square().mean() for o in outs).backward()


def build_detector(arch: str, with_cp: bool):
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(os.path.join(ROOT, 'configs',
                                       f'mask_rcnn_vrwkv_{arch[0]}.py'))
    cfg.model.backbone.with_cp = with_cp
    cfg.model.backbone.init_cfg = None  # no download; weights do not matter
    init_default_scope('mmdet')
    return MODELS.build(cfg.model)


def detector_step(model, width: int, height: int):
    """The loss of Mask R-CNN for one image with 8 instances, backward."""
    import numpy as np
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(8, 2, generator=g) * torch.tensor([width, height]) * 0.7
    wh = (torch.rand(8, 2, generator=g) * 0.25 + 0.05) * torch.tensor(
        [width, height])
    boxes = torch.cat([xy, xy + wh], 1).round()
    masks = np.zeros((8, height, width), dtype=np.uint8)
    for i, (x0, y0, x1, y1) in enumerate(boxes.int().tolist()):
        masks[i, y0:y1, x0:x1] = 1
    sample = DetDataSample(metainfo=dict(
        img_shape=(height, width), ori_shape=(height, width),
        scale_factor=(1., 1.)))
    sample.gt_instances = InstanceData(
        bboxes=boxes, labels=torch.arange(8) % 80,
        masks=BitmapMasks(masks, height, width))
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8,
                          generator=g)
    data = model.data_preprocessor(
        dict(inputs=[image], data_samples=[sample]), True)
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    loss.backward()


def child(width: int, height: int, with_cp: bool, arch: str,
          limit_gb: float, detector: bool) -> None:
    watchdog(limit_gb)
    import mmvrwkv  # noqa: F401
    torch.manual_seed(0)
    build, step = ((build_detector, detector_step) if detector else
                   (build_backbone, backbone_step))
    model = build(arch, with_cp)
    model.train()
    built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    start = time.perf_counter()
    step(model, width, height)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(json.dumps(dict(size=f'{width}x{height}', with_cp=with_cp,
                          arch=arch, model='Mask R-CNN' if detector else
                          'backbone', params_m=round(params, 1),
                          peak_gb=round(peak, 2),
                          step_gb=round(peak - built, 2),
                          seconds=round(seconds, 1),
                          threads=torch.get_num_threads())), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', nargs='+', default=['320x192'],
                        help='WxH, e.g. 1333x800')
    parser.add_argument('--arch', default='large')
    parser.add_argument('--limit-gb', type=float, default=6.0)
    parser.add_argument('--detector', action='store_true',
                        help='the whole Mask R-CNN, not only the backbone')
    parser.add_argument('--json',
                        default=os.path.join(ROOT, 'docs',
                                             'bench_with_cp_memory.json'),
                        help="results file ('' writes none)")
    parser.add_argument('--child', nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        w, h, cp = args.child
        child(int(w), int(h), cp == '1', args.arch, args.limit_gb,
              args.detector)
        return
    results = []
    for size in args.sizes:
        w, h = size.split('x')
        for cp in ('1', '0'):
            proc = subprocess.run(
                [sys.executable, __file__, '--arch', args.arch,
                 '--limit-gb', str(args.limit_gb), '--child', w, h, cp] +
                (['--detector'] if args.detector else []),
                capture_output=True, text=True)
            if proc.returncode == EXCEEDED:
                row = dict(size=size, with_cp=cp == '1', arch=args.arch,
                           model='Mask R-CNN' if args.detector else
                           'backbone', peak_gb=f'> {args.limit_gb}',
                           step_gb=None)
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
