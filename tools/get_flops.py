"""FLOPs of a config's model (or its backbone), counted as the paper does.

Usage:
    python tools/get_flops.py configs/vrwkv_t_in1k.py --shape 224
    python tools/get_flops.py configs/mask_rcnn_vrwkv_t.py --shape 800 1333
    python tools/get_flops.py configs/mask_rcnn_vrwkv_t.py --backbone-only
    python tools/get_flops.py configs/upernet_vrwkv_t.py --backbone-only

The whole model (classifier, detector, segmentor) gets a random image the
way mmdet's get_flops tool feeds one: through the model's data
preprocessor (normalised, padded to its size divisor) with a data sample
carrying the image's shapes, and runs in tensor mode (a detector: backbone,
neck, RPN and the RoI heads on the RPN's proposals). With
``--backbone-only`` it gets a (1, 3, H, W) tensor.

Without ``--shape`` the input is the paper's: 224 for classifiers, 800x1333
for mmdet configs and 512x512 for mmseg configs (the adapter pads to a
multiple of 32, as mmdet's data preprocessor does). The dense backbone
numbers of the official README are backbone + adapter at those inputs.

Counted as the official scripts count (``mmvrwkv/apis/flops.py``): mmcv's
counter plus the analytic Bi-WKV / Bi-WKV6 and adapter terms; the models'
SyncBN layers count zero in that counter, as in the published numbers.
``--mmengine`` also prints mmengine's count (the mm tools' counter) with
our operators' handles registered.
"""
import argparse

from mmengine.config import DictAction

from mmvrwkv.apis import build_model, load_config
from mmvrwkv.apis.flops import count_flops, count_flops_mmengine, model_inputs

DENSE_INPUT = {'mmdet': (800, 1333), 'mmseg': (512, 512)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--shape',
                        type=int,
                        nargs='+',
                        help='input H [W] (default: the paper\'s input: 224 '
                        'for classifiers, 800 1333 for mmdet configs, 512 '
                        'for mmseg configs)')
    parser.add_argument('--backbone-only',
                        action='store_true',
                        help='count cfg.model.backbone alone')
    parser.add_argument('--mmengine',
                        action='store_true',
                        help='also print mmengine.analysis\'s count')
    parser.add_argument('--cfg-options',
                        nargs='+',
                        action=DictAction,
                        help='override config settings, key=value')
    args = parser.parse_args()
    cfg = load_config(args.config, args.cfg_options)
    if args.shape is None:
        args.shape = list(DENSE_INPUT.get(cfg.get('default_scope'), (224, )))
    if len(args.shape) not in (1, 2):
        parser.error('--shape takes H or H W')
    h, w = (args.shape * 2)[:2]
    # building initialises no weights and downloads nothing
    model = build_model(cfg, backbone_only=args.backbone_only)
    inputs, data_samples = model_inputs(model, (h, w))
    flops = count_flops(model, inputs, data_samples)
    params = sum(p.numel() for p in model.parameters())
    padded = tuple(inputs[0].shape[-2:])
    size = f'3x{h}x{w}' + (f' (padded to {padded[0]}x{padded[1]})'
                           if padded != (h, w) else '')
    print(f'input {size}: {flops["total"] / 1e9:.2f} GFLOPs '
          f'(counted {flops["traced"] / 1e9:.2f} + Bi-WKV '
          f'{flops["wkv"] / 1e9:.3f} + deformable {flops["deform"] / 1e9:.3f})'
          f', {params / 1e6:.2f} M params')
    if len(flops['parts']) > 1:
        print('counted per part: ' +
              ', '.join(f'{name} {macs / 1e9:.2f}G'
                        for name, macs in flops['parts'].items() if macs))
    if args.mmengine:
        print(f'mmengine.analysis: '
              f'{count_flops_mmengine(model, inputs, data_samples) / 1e9:.3f}'
              ' GFLOPs')


if __name__ == '__main__':
    main()
