"""Run a model on an image or a folder of images and save the pictures.

    python tools/infer.py demo.jpg configs/upernet_vrwkv_t.py upernet_t.pth \
        --out-dir vis/
    python tools/infer.py images/ configs/mask_rcnn_vrwkv_t.py \
        mask_rcnn_t.safetensors --out-dir vis/ --score-thr 0.5
    python tools/infer.py demo.jpg configs/upernet_vrwkv_t.py   # random

Writes ``OUT_DIR/<image name>.png`` for each image: boxes and masks for a
detector, the coloured label map over the image for a segmentor, the top
class for a classifier, and prints the written paths, one a line, on stdout
(everything else, logs and progress, goes to stderr). Checkpoints: our own,
or official ones converted by tools/convert_official.py (.pth or
.safetensors); without one the weights are random (a warning says so).
Class names and palette: the checkpoint's, else the config's dataset's.
"""
import argparse
import os
import sys

from mmvrwkv.apis import inference


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Visualise the predictions of an mmvrwkv model.')
    parser.add_argument('inputs', help='an image or a folder of images')
    parser.add_argument('config', help='mmdet/mmseg/mmpretrain config')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='.pth or .safetensors weights (default: none, '
                        'random weights)')
    parser.add_argument('--out-dir', default='vis',
                        help='where the PNGs go (default: vis)')
    parser.add_argument('--device', default=None,
                        help='cpu, cuda, cuda:1, ... (default: cuda if '
                        'available)')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detections below this score are not drawn')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    # stdout carries the written paths only: whatever the libraries print
    # (logs, progress bars, from Python or C) goes to stderr
    paths_out = os.fdopen(os.dup(sys.stdout.fileno()), 'w')
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        written = inference(args.inputs, args.config, args.checkpoint,
                            args.out_dir, device=args.device,
                            score_thr=args.score_thr)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        sys.exit(f'error: {err}')
    finally:
        sys.stdout.flush()
    for path in written:
        print(path, file=paths_out)
    paths_out.flush()
    return 0


if __name__ == '__main__':
    sys.exit(main())
