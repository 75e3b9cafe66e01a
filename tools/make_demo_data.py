"""Write a small synthetic dataset in real COCO and ADE20K layouts.

Each image shows a few non-overlapping shapes (circle, square, triangle) of
random size, rotation and position on a noisy grey background. Each class
has its own hue family (jittered), so a model trained from scratch for a few
minutes on a CPU can tell the classes apart; the outlines still differ.
The same scenes are written twice:

    OUT/coco/{train2017,val2017}/*.png
    OUT/coco/annotations/instances_{train2017,val2017}.json   (polygons)
    OUT/ade/ADEChallengeData2016/images/{training,validation}/*.jpg
    OUT/ade/ADEChallengeData2016/annotations/{training,validation}/*.png

COCO polygons are the exact outlines the shapes were drawn from; the ADE
maps use the ADE20K convention: 0 = unlabelled (ignored by
``reduce_zero_label``), 1 = background, 2.. = the shape classes.

Usage:
    python tools/make_demo_data.py data/shapes --train 200 --val 40
"""
import argparse
import json
import math
import os
import os.path as osp
from typing import List, Tuple

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ('circle', 'square', 'triangle')
SEG_CLASSES = ('background', ) + CLASSES
HUES = ((220, 40, 50), (40, 90, 230), (230, 210, 30))  # per class, RGB


def _outline(kind: str, cx: float, cy: float, r: float,
             angle: float) -> List[Tuple[float, float]]:
    sides = {'circle': 48, 'square': 4, 'triangle': 3}[kind]
    return [(cx + r * math.cos(angle + 2 * math.pi * i / sides),
             cy + r * math.sin(angle + 2 * math.pi * i / sides))
            for i in range(sides)]


def make_scene(rng: np.random.Generator, size: int, max_shapes: int):
    """One image, its instances (class, polygon) and its ADE label map."""
    base = np.full(3, rng.integers(60, 200)) + rng.integers(-10, 11, 3)
    noise = rng.normal(0, 12, (size, size, 3))
    img = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
    label = Image.new('L', (size, size), 1)
    draw, draw_label = ImageDraw.Draw(img), ImageDraw.Draw(label)
    placed, instances = [], []
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        for _attempt in range(20):
            r = float(rng.uniform(0.08, 0.2) * size)
            cx, cy = rng.uniform(r, size - r, 2)
            if all(math.hypot(cx - x, cy - y) > r + q + 4
                   for x, y, q in placed):
                break
        else:
            continue
        placed.append((cx, cy, r))
        cls = int(rng.integers(len(CLASSES)))
        poly = _outline(CLASSES[cls], cx, cy, r,
                        float(rng.uniform(0, 2 * math.pi)))
        colour = tuple(int(c) for c in np.clip(
            np.array(HUES[cls]) + rng.integers(-40, 41, 3), 0, 255))
        draw.polygon(poly, fill=colour)
        draw_label.polygon(poly, fill=cls + 2)
        instances.append((cls, poly))
    return img, instances, label


def _coco_annotation(ann_id, image_id, cls, poly):
    xs, ys = [p[0] for p in poly], [p[1] for p in poly]
    # shoelace area of the exact polygon
    area = 0.5 * abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i]
                         for i in range(len(poly))))
    x0, y0 = min(xs), min(ys)
    return dict(
        id=ann_id, image_id=image_id, category_id=cls + 1,
        segmentation=[[round(v, 2) for p in poly for v in p]],
        area=round(area, 2),
        bbox=[round(x0, 2), round(y0, 2), round(max(xs) - x0, 2),
              round(max(ys) - y0, 2)],
        iscrowd=0)


def write_split(out: str, coco_split: str, ade_split: str, num: int,
                size: int, max_shapes: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    coco_dir = osp.join(out, 'coco', coco_split)
    ade = osp.join(out, 'ade', 'ADEChallengeData2016')
    ade_img = osp.join(ade, 'images', ade_split)
    ade_ann = osp.join(ade, 'annotations', ade_split)
    for d in (coco_dir, ade_img, ade_ann, osp.join(out, 'coco',
                                                   'annotations')):
        os.makedirs(d, exist_ok=True)
    images, annotations = [], []
    for i in range(num):
        img, instances, label = make_scene(rng, size, max_shapes)
        name = f'{coco_split}_{i:05d}'
        # PNG keeps the COCO copy lossless (and mmdet's --show-dir keeps
        # the input's extension); ADE20K images are JPEGs
        img.save(osp.join(coco_dir, name + '.png'))
        img.save(osp.join(ade_img, name + '.jpg'), quality=95)
        label.save(osp.join(ade_ann, name + '.png'))
        images.append(dict(id=i + 1, file_name=name + '.png', height=size,
                           width=size))
        for cls, poly in instances:
            annotations.append(_coco_annotation(
                len(annotations) + 1, i + 1, cls, poly))
    coco = dict(
        info=dict(description='mmvrwkv synthetic shapes'),
        licenses=[], images=images, annotations=annotations,
        categories=[dict(id=i + 1, name=n, supercategory='shape')
                    for i, n in enumerate(CLASSES)])
    path = osp.join(out, 'coco', 'annotations',
                    f'instances_{coco_split}.json')
    # write then rename, so an interrupted run never leaves half a file
    with open(path + '.tmp', 'w') as f:
        json.dump(coco, f)
    os.replace(path + '.tmp', path)
    return dict(images=len(images), instances=len(annotations))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('out', help='output folder, e.g. data/shapes')
    parser.add_argument('--train', type=int, default=200)
    parser.add_argument('--val', type=int, default=40)
    parser.add_argument('--size', type=int, default=256)
    parser.add_argument('--max-shapes', type=int, default=4)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    if args.train < 1 or args.val < 1 or args.size < 64:
        parser.error('need --train >= 1, --val >= 1 and --size >= 64')
    for coco_split, ade_split, num, seed in (
            ('train2017', 'training', args.train, args.seed),
            ('val2017', 'validation', args.val, args.seed + 1)):
        stats = write_split(args.out, coco_split, ade_split, num, args.size,
                            args.max_shapes, seed)
        print(f'{coco_split}: {stats["images"]} images, '
              f'{stats["instances"]} instances')
    print(f'wrote {osp.join(args.out, "coco")} and '
          f'{osp.join(args.out, "ade", "ADEChallengeData2016")}')


if __name__ == '__main__':
    main()
