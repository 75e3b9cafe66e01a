"""Export a VRWKV or VRWKV6 model to ONNX and check the file with
onnxruntime.

    python tools/export_onnx.py configs/vrwkv_t_in1k.py vrwkv_t.pth \
        --out vrwkv_t.onnx
    python tools/export_onnx.py configs/upernet_vrwkv_t.py upernet_t.pth \
        --shape 512 512 --out upernet_t.onnx
    python tools/export_onnx.py configs/upernet_vrwkv_t.py --backbone-only
    python tools/export_onnx.py configs/upernet_vrwkv6_t.py --shape 512 512

A command line over :mod:`mmvrwkv.apis.export` (what is exported and how:
its docstring). The file is run in onnxruntime on a random input and
compared with PyTorch eager: the tool prints the largest absolute
difference and the difference relative to the largest output magnitude,
and exits with status 1 if that exceeds ``--rtol`` (default 1e-4).

Weights are random unless CHECKPOINT is given (``init_cfg`` pretrained URLs
in configs are ignored: nothing is downloaded). CHECKPOINT is loaded
weights-only and must match the model exactly (a full-model checkpoint's
``backbone.`` part is used with ``--backbone-only``).
"""
import argparse
import os.path as osp
import sys
import time

import torch

from mmvrwkv.apis.export import (ExportError, build_export_model,
                                 compare_with_onnxruntime, export_onnx)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export a VRWKV or VRWKV6 classifier, segmentor or '
        'backbone to ONNX (Bi-WKV / Bi-WKV6 as standard operators) and check '
        'it in onnxruntime.')
    parser.add_argument('config', help='mmpretrain/mmseg (or, with '
                        '--backbone-only, mmdet) config')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='.pth or .safetensors weights (default: random '
                        'weights)')
    parser.add_argument('--out', default=None,
                        help='ONNX file (default: <config name>.onnx, '
                        '<config name>_backbone.onnx with --backbone-only)')
    parser.add_argument('--shape', type=int, nargs=2, default=[224, 224],
                        metavar=('H', 'W'),
                        help='input height and width (default: 224 224)')
    parser.add_argument('--batch', type=int, default=1,
                        help='batch size of the graph (default: 1)')
    parser.add_argument('--backbone-only', action='store_true',
                        help='export only model.backbone')
    parser.add_argument('--opset', type=int, default=None,
                        help="ONNX opset (default: torch's)")
    parser.add_argument('--rtol', type=float, default=1e-4,
                        help='largest accepted difference from PyTorch, '
                        'relative to the output scale (default: 1e-4)')
    parser.add_argument('--no-check', action='store_true',
                        help='skip the onnxruntime comparison')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the random weights and sample input')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.batch < 1 or min(args.shape) < 1:
        sys.exit('error: --batch and --shape must be positive')
    out = args.out or osp.splitext(osp.basename(args.config))[0] + (
        '_backbone' if args.backbone_only else '') + '.onnx'
    torch.manual_seed(args.seed)
    try:
        module = build_export_model(args.config, args.checkpoint,
                                    args.backbone_only)
        x = torch.randn(args.batch, 3, *args.shape,
                        generator=torch.Generator().manual_seed(args.seed))
        start = time.perf_counter()
        names = export_onnx(module, x, out, args.opset)
        print(f'wrote {out} ({osp.getsize(out) / 2**20:.1f} MiB, outputs '
              f'{", ".join(names)}) in {time.perf_counter() - start:.1f} s')
        if args.no_check:
            return 0
        result = compare_with_onnxruntime(out, module, x)
    except (FileNotFoundError, ExportError) as err:
        sys.exit(f'error: {err}')
    for r in result['outputs']:
        print(f"{r['name']} {tuple(r['shape'])}: max abs diff "
              f"{r['max_abs']:.3g}, relative {r['max_rel']:.3g}")
    ok = result['max_rel'] <= args.rtol
    print(f"onnxruntime vs PyTorch: max abs diff {result['max_abs']:.3g}, "
          f"max relative diff {result['max_rel']:.3g} "
          f"({'OK' if ok else 'FAIL'}, tolerance {args.rtol:g})")
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
