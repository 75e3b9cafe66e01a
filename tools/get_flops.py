"""FLOPs of a config's model (or its backbone), counted as the paper does.

Usage:
    python tools/get_flops.py configs/vrwkv_t_in1k.py --shape 224
    python tools/get_flops.py CONFIG --shape 800 1280 --backbone-only
"""
import argparse
import importlib

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmvrwkv.utils.flops import count_flops


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs='+', default=[224],
                        help='input H [W]')
    parser.add_argument('--backbone-only', action='store_true')
    args = parser.parse_args()
    if len(args.shape) not in (1, 2):
        parser.error('--shape takes H or H W')
    h, w = (args.shape * 2)[:2]
    cfg = Config.fromfile(args.config)
    scope = cfg.get('default_scope', 'mmengine')
    init_default_scope(scope)
    models = importlib.import_module(f'{scope}.registry').MODELS
    model = models.build(cfg.model)
    if args.backbone_only:
        model = model.backbone
    flops = count_flops(model, (torch.randn(1, 3, h, w), ))
    params = sum(p.numel() for p in model.parameters())
    print(f'input 3x{h}x{w}: {flops["total"] / 1e9:.2f} GFLOPs '
          f'(traced {flops["traced"] / 1e9:.2f} + Bi-WKV '
          f'{flops["wkv"] / 1e9:.3f}), {params / 1e6:.2f} M params')


if __name__ == '__main__':
    main()
