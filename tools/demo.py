"""The main job: build every VRWKV preset from the MODELS registry and run it.

Prints, per preset, the parameter count, output shapes at 224x224 and at a
non-square 320x192, and the forward time on this machine, plus which Bi-WKV
kernel ran. Usage: python tools/demo.py [--archs tiny small ...]
"""
import argparse
import time

import torch
from mmengine.registry import MODELS

import mmvrwkv
from mmvrwkv.ops import bi_wkv_backends


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--archs', nargs='+',
                        default=['tiny', 'small', 'base', 'large'])
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args()
    print(f'mmvrwkv {mmvrwkv.__version__}, torch {torch.__version__}, '
          f'Bi-WKV backends on {args.device}: '
          f'{bi_wkv_backends(args.device)}')
    print(f'{"arch":8s} {"params":>9s} {"224x224 out":>18s} '
          f'{"320x192 out":>18s} {"fwd 224 (s)":>12s}')
    torch.manual_seed(0)
    for arch in args.archs:
        model = MODELS.build(dict(type='VRWKV', arch=arch)).to(
            args.device).eval()
        params = sum(p.numel() for p in model.parameters()) / 1e6
        with torch.no_grad():
            x = torch.randn(1, 3, 224, 224, device=args.device)
            start = time.perf_counter()
            (square, ) = model(x)
            seconds = time.perf_counter() - start
            (wide, ) = model(torch.randn(1, 3, 320, 192, device=args.device))
        assert torch.isfinite(square).all() and torch.isfinite(wide).all()
        print(f'{arch:8s} {params:8.1f}M {str(tuple(square.shape)):>18s} '
              f'{str(tuple(wide.shape)):>18s} {seconds:12.3f}')


if __name__ == '__main__':
    main()
