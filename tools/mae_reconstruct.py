"""Pictures of an MAE pre-training: each image beside its visible patches
and the reconstruction of the removed ones.

    python tools/mae_reconstruct.py configs/demo/mae_vrwkv_demo_shapes.py \
        work_dirs/demo_mae/mae_grid/epoch_40.pth \
        data/shapes/ade/ADEChallengeData2016/images/validation \
        --out-dir vis/ --num 4

Writes ``OUT_DIR/<image name>.png`` (original | visible | reconstruction)
for the first NUM images, and ``OUT_DIR/reconstructions.png`` with all the
rows; prints the written paths. A command line over
:func:`mmvrwkv.apis.save_reconstructions`.
"""
import argparse
import os.path as osp
import sys

from mmengine.config import DictAction

from mmvrwkv.apis.mae import save_reconstructions, stack_rows


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Reconstruction pictures of an MAE pre-training.')
    parser.add_argument('config', help='an MAE pre-training config')
    parser.add_argument('checkpoint', help='its checkpoint (.pth or '
                        '.safetensors)')
    parser.add_argument('images', help='an image or a folder of images')
    parser.add_argument('--out-dir', default='vis',
                        help='where the PNGs go (default: vis)')
    parser.add_argument('--num', type=int, default=4,
                        help='how many images (default: 4)')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the random masks (default: 0)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, e.g. '
                        'model.backbone.mask_mode=official')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        written = save_reconstructions(
            args.config, args.checkpoint, args.images, args.out_dir,
            args.num, args.cfg_options, args.seed)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        sys.exit(f'error: {err}')
    for path in written:
        print(path)
    print(stack_rows(written, osp.join(args.out_dir, 'reconstructions.png')))
    return 0


if __name__ == '__main__':
    sys.exit(main())
