"""Convert a released Vision-RWKV checkpoint for this package.

    python tools/convert_official.py vrwkv_t_in1k_224.pth vrwkv_t.pth
    python tools/convert_official.py \
        mask_rcnn_vrwkv_adapter_tiny_fpn_1x_coco.pth mask_rcnn_t.safetensors

Reads the file with ``weights_only=True``, finds the weights, renames what
differs (see mmvrwkv/apis/official_checkpoint.py), checks every key and
shape against the model of the matching config in configs/ (or --config),
and writes a ``.pth`` (``{'state_dict', 'meta'}``) or, for a DST ending in
``.safetensors``, a safetensors file. The output loads with strict=True.
"""
import argparse
import os
import os.path as osp
import sys
from collections import Counter

import torch
from mmengine.config import DictAction

from mmvrwkv.apis import build_model
from mmvrwkv.apis.official_checkpoint import (KINDS, compare_shapes,
                                              convert_official)
from mmvrwkv.utils import load_checkpoint_file, save_safetensors

CONFIG_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                      'configs')
SHORT = dict(tiny='t', small='s', base='b', large='l')


def default_config(kind: str, arch: str) -> str:
    """The config in configs/ for a released checkpoint."""
    if arch not in SHORT:
        raise ValueError(f'the backbone is no preset ({arch}): pass the '
                         '--config of a model with this architecture')
    s = SHORT[arch]
    name = dict(cls=f'vrwkv_{s}_in1k.py' if s != 'l' else
                'vrwkv_l_in1k_384.py',
                det=f'mask_rcnn_vrwkv_{s}.py',
                seg=f'upernet_vrwkv_{s}.py')[kind]
    return osp.join(CONFIG_DIR, name)


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
    if osp.abspath(args.src) == osp.abspath(args.dst):
        sys.exit('refusing to overwrite the source file: choose another DST')
    try:
        checkpoint = load_checkpoint_file(args.src, map_location='cpu')
        conv = convert_official(checkpoint, args.kind,
                                source=osp.basename(args.src))
        config = args.config or default_config(conv.kind, conv.arch)
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        sys.exit(f'{args.src}: {err}')
    # on the 'meta' device: names and shapes, no memory, no download
    skeleton = build_model(config, args.cfg_options, device='meta')
    problems = compare_shapes(conv.state_dict, skeleton)
    if problems:
        sys.exit(f'{args.src} does not fit the model of {config} '
                 f'(VRWKV {conv.arch}, {conv.kind}):\n  '
                 + '\n  '.join(problems)
                 + '\nPick the config of this checkpoint with --config '
                 '(and --cfg-options for e.g. num_classes).')
    report(conv, config)
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    if args.dst.endswith('.safetensors'):
        save_safetensors(conv.state_dict, args.dst, conv.meta)
    else:
        torch.save(dict(state_dict=conv.state_dict, meta=conv.meta),
                   args.dst)
    print(f'wrote {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
