"""FLOPs of a config's model (or its backbone), counted as the paper does.

Usage:
    python tools/get_flops.py configs/vrwkv_t_in1k.py --shape 224
    python tools/get_flops.py configs/mask_rcnn_vrwkv_t.py --backbone-only
    python tools/get_flops.py configs/upernet_vrwkv_t.py --backbone-only

With ``--backbone-only`` and no ``--shape``, the input is the one the
paper's dense tables use: 800x1333 for mmdet configs, 512x512 for mmseg
configs (the adapter pads to a multiple of 32, as mmdet's data preprocessor
does). The model is built from the config as is: its SyncBN layers count
zero, as in mmcv's counter that produced the published numbers.
"""
import argparse

import torch
from mmengine.config import DictAction

from mmvrwkv.apis import build_model, count_flops, load_config

DENSE_INPUT = {'mmdet': (800, 1333), 'mmseg': (512, 512)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs='+',
                        help='input H [W] (default: 224, or the paper\'s '
                        'dense input with --backbone-only)')
    parser.add_argument('--backbone-only', action='store_true')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    args = parser.parse_args()
    cfg = load_config(args.config, args.cfg_options)
    scope = cfg.get('default_scope', 'mmengine')
    if args.shape is None:
        args.shape = list(DENSE_INPUT.get(scope, (224, ))) \
            if args.backbone_only else [224]
    if len(args.shape) not in (1, 2):
        parser.error('--shape takes H or H W')
    h, w = (args.shape * 2)[:2]
    # the backbone alone needs no heads
    model = build_model(cfg, backbone_only=args.backbone_only)
    flops = count_flops(model, (torch.randn(1, 3, h, w), ))
    params = sum(p.numel() for p in model.parameters())
    print(f'input 3x{h}x{w}: {flops["total"] / 1e9:.2f} GFLOPs '
          f'(counted {flops["traced"] / 1e9:.2f} + analytic '
          f'{flops["wkv"] / 1e9:.3f}), {params / 1e6:.2f} M params')


if __name__ == '__main__':
    main()
