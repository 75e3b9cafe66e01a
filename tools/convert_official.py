"""Convert a released Vision-RWKV checkpoint for this package.

    python tools/convert_official.py vrwkv_t_in1k_224.pth vrwkv_t.pth
    python tools/convert_official.py \
        mask_rcnn_vrwkv_adapter_tiny_fpn_1x_coco.pth mask_rcnn_t.safetensors

A command line over :func:`mmvrwkv.apis.official_checkpoint.convert_file`:
reads the file with ``weights_only=True``, finds the weights, renames what
differs, checks every key and shape against the model of the matching
config of this package (or --config),
and writes a ``.pth`` (``{'state_dict', 'meta'}``) or, for a DST ending in
``.safetensors``, a safetensors file. The output loads with strict=True.
"""
import argparse
import sys
from collections import Counter

from mmengine.config import DictAction

from mmvrwkv.apis.official_checkpoint import KINDS, convert_file


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert an official Vision-RWKV checkpoint (ImageNet '
        'classifier, Mask R-CNN or UperNet) for mmvrwkv.')
    parser.add_argument('src', help='official .pth file')
    parser.add_argument('dst', help='output .pth or .safetensors file')
    parser.add_argument('--kind', default='auto',
                        choices=('auto', ) + KINDS,
                        help='classifier, detector or segmentor '
                        '(default: from the head keys)')
    parser.add_argument('--config', help='check against this config\'s '
                        'model (default: the configs/ file of the kind and '
                        'preset found)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, e.g. '
                        'model.head.num_classes=21841')
    return parser.parse_args(argv)


def report(conv, config: str) -> None:
    print(f'found: {conv.kind} model, VRWKV {conv.arch} '
          f'({conv.embed_dims} channels, {conv.num_layers} layers), '
          f'{len(conv.state_dict)} tensors'
          + (f" under '{conv.container}'" if conv.container else ''))
    if conv.stripped_module:
        print(f"stripped DDP 'module.' prefixes ({conv.stripped_module} "
              'keys)')
    rules = Counter((old.rsplit('.', 1)[0], new.rsplit('.', 1)[0])
                    for old, new in conv.renamed)
    for (old, new), n in sorted(rules.items()):
        print(f'renamed {old}.* -> {new}.* ({n} tensors)')
    if not conv.renamed:
        print('renamed nothing: the names are those of mmdet 3.x / mmseg '
              '1.x / mmpretrain 1.x already')
    if conv.meta.get('dataset_meta', {}).get('classes'):
        print(f"kept {len(conv.meta['dataset_meta']['classes'])} class "
              'names as dataset_meta')
    print(f'checked every key and shape against {config}')


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        conv, config = convert_file(args.src, args.dst, args.kind,
                                    args.config, args.cfg_options)
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        message = str(err)
        sys.exit(message if message.startswith(args.src) else
                 f'{args.src}: {message}')
    report(conv, config)
    print(f'wrote {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
