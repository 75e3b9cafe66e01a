"""Training throughput of VRWKV-Adapter-T Mask R-CNN (images/s of one full
training iteration: data preprocessing, forward with losses, backward,
AdamW step) at 1333x800, batch 1, on the CPU, in float32 and with bfloat16
autocast.

The model is ``configs/mask_rcnn_vrwkv_t.py`` as is, except
``init_cfg=None`` (random init; speed does not depend on the weights) and
SyncBN -> BN (one process). The batch is one synthetic 800x1333 image with
five rectangles as instances (boxes, labels and bitmap masks), packed as the
COCO pipeline packs it, so the RPN, RoI and mask heads do their usual work.
Each iteration is mmengine's ``model.train_step`` with the optimizer wrapper
a config's ``--amp`` gets on the CPU: bf16 uses
:class:`mmvrwkv.engine.CPUAmpOptimWrapper` (bfloat16 autocast of backbone
and neck, float32 heads), fp32 the plain OptimWrapper; AdamW either way.
Median of ``--iters`` timed iterations after ``--warmup`` untimed ones.

Usage:
    python benchmarks/bench_train_step.py [--iters 3] [--warmup 1]
        [--modes fp32 bf16] [--json out.json]
"""
import argparse
import logging
import os
import statistics
import time

import numpy as np
import torch

from report import load_average, machine_info, print_table, write_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, 'configs', 'mask_rcnn_vrwkv_t.py')


def build_model(config):
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None
    cfg.model.backbone.norm_cfg = dict(type='BN', requires_grad=True)
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights logs every parameter
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    return model.train()


def synthetic_batch(h=800, w=1333, num_objects=5, seed=0):
    """One image with ``num_objects`` filled rectangles as instances, in the
    format mmdet's PackDetInputs produces."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, size=(3, h, w), dtype=np.uint8)
    boxes, masks = [], np.zeros((num_objects, h, w), dtype=np.uint8)
    for i in range(num_objects):
        bw, bh = rng.integers(60, 400), rng.integers(60, 300)
        x0, y0 = rng.integers(0, w - bw), rng.integers(0, h - bh)
        img[:, y0:y0 + bh, x0:x0 + bw] = rng.integers(100, 255, size=(3, 1, 1))
        masks[i, y0:y0 + bh, x0:x0 + bw] = 1
        boxes.append([x0, y0, x0 + bw, y0 + bh])
    sample = DetDataSample(metainfo=dict(
        img_shape=(h, w), ori_shape=(h, w), scale_factor=(1., 1.),
        flip=False))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor(boxes, dtype=torch.float32),
        labels=torch.from_numpy(rng.integers(0, 80, num_objects)),
        masks=BitmapMasks(masks, h, w))
    return dict(inputs=[torch.from_numpy(img)], data_samples=[sample])


def build_optim_wrapper(model, mode):
    """What ``--amp`` gives on the CPU for bf16 (PortableRunner builds
    CPUAmpOptimWrapper: autocast of backbone and neck, float32 heads, whose
    mmcv CPU kernels take float32 only); the plain OptimWrapper for fp32."""
    from mmengine.registry import OPTIM_WRAPPERS

    import mmvrwkv  # noqa: F401  (registers CPUAmpOptimWrapper)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4,
                                  weight_decay=0.01)
    kind = 'CPUAmpOptimWrapper' if mode == 'bf16' else 'OptimWrapper'
    return OPTIM_WRAPPERS.build(dict(type=kind, optimizer=optimizer))


def bench(mode, args):
    torch.manual_seed(0)
    model = build_model(args.config)
    optim_wrapper = build_optim_wrapper(model, mode)
    batch = synthetic_batch()
    times, losses = [], []
    for i in range(args.warmup + args.iters):
        t0 = time.perf_counter()
        # mmengine's training step: preprocess and forward under the
        # wrapper's optim_context, backward and AdamW step
        log_vars = model.train_step(batch, optim_wrapper)
        seconds = time.perf_counter() - t0
        losses.append(log_vars['loss'].item())
        print(f'{mode} iteration {i}: {seconds:.1f} s, loss {losses[-1]:.3f}'
              + (' (warm-up)' if i < args.warmup else ''), flush=True)
        if i >= args.warmup:
            times.append(seconds)
    if not all(np.isfinite(losses)):
        raise RuntimeError(f'{mode}: non-finite loss {losses}')
    median = statistics.median(times)
    return dict(mode=mode, seconds_per_iter=round(median, 2),
                images_per_s=round(1 / median, 4),
                iter_seconds=[round(t, 2) for t in times],
                losses=[round(v, 3) for v in losses],
                load=load_average())


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--config', default=CONFIG)
    p.add_argument('--modes', nargs='+', default=['fp32', 'bf16'],
                   choices=['fp32', 'bf16'])
    p.add_argument('--iters', type=int, default=3)
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--threads', type=int, default=0,
                   help='torch threads (0: torch default)')
    p.add_argument('--json',
                   default=os.path.join(ROOT, 'docs', 'bench_train_step.json'),
                   help="results file ('' writes none)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = machine_info(bf16_isa=torch.backends.cpu.get_cpu_capability())
    print(machine, flush=True)
    rows = []
    for mode in args.modes:
        rows.append(bench(mode, args))
        print(rows[-1], flush=True)
    machine['load_after'] = load_average()
    print_table(['precision', 's / iteration', 'images / s', 'load (1 min)'],
                [[r['mode'], r['seconds_per_iter'], r['images_per_s'],
                  r['load'][0]] for r in rows])
    write_json(args.json, machine, rows)


if __name__ == '__main__':
    main()
