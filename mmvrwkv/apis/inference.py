"""Run a detector, segmentor or classifier on images and save pictures.

Built on the host libraries' inferencers (mmdet ``DetInferencer``, mmseg
``MMSegInferencer``, mmpretrain ``ImageClassificationInferencer``), chosen
by the config's ``default_scope``; they read class names and palette from
the checkpoint's ``dataset_meta`` (kept by tools/convert_official.py) and
load weights through mmengine, here with mmvrwkv's loaders
(:func:`mmvrwkv.utils.enable_safe_loading`), so ``.pth`` and
``.safetensors`` both work and nothing pickled is executed.
"""
import os
import os.path as osp
from typing import List, Optional, Union

import mmcv
import numpy as np
import torch
from mmengine.config import Config

from ..utils import enable_safe_loading

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
SCOPES = ('mmdet', 'mmseg', 'mmpretrain')


def list_images(path: str) -> List[str]:
    """``path`` itself if it is a file, else the images in the folder
    (sorted, not recursive)."""
    if osp.isfile(path):
        return [path]
    if not osp.isdir(path):
        raise FileNotFoundError(f'{path} is neither an image nor a folder')
    images = sorted(
        osp.join(path, name) for name in os.listdir(path)
        if name.lower().endswith(IMAGE_SUFFIXES))
    if not images:
        raise FileNotFoundError(
            f'no images ({", ".join(IMAGE_SUFFIXES)}) in {path}')
    return images


def build_inferencer(config: Union[str, Config], checkpoint: Optional[str],
                     device: Optional[str] = None):
    """The mm inferencer for the config's task, with the weights loaded.

    Returns:
        (inferencer, scope): scope is 'mmdet', 'mmseg' or 'mmpretrain'.
    """
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise ValueError(
            f'config {getattr(cfg, "filename", config)} has default_scope '
            f'{scope!r}; inference supports detectors (mmdet), segmentors '
            '(mmseg) and classifiers (mmpretrain) configs')
    if checkpoint is not None and not osp.isfile(checkpoint) and \
            '://' not in checkpoint:
        raise FileNotFoundError(f'checkpoint {checkpoint} does not exist')
    device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
    # the inferencers load weights through mmengine, outside any runner
    enable_safe_loading()
    if scope == 'mmdet':
        from mmdet.apis import DetInferencer
        inferencer = DetInferencer(model=cfg, weights=checkpoint,
                                   device=device, show_progress=False)
    elif scope == 'mmseg':
        from mmseg.apis import MMSegInferencer
        inferencer = MMSegInferencer(model=cfg, weights=checkpoint,
                                     device=device)
        _complete_palette(inferencer.model)
    else:
        from mmpretrain.apis import ImageClassificationInferencer
        inferencer = ImageClassificationInferencer(
            model=cfg, pretrained=checkpoint or False, device=device)
    return inferencer, scope


def _complete_palette(model) -> None:
    """mmseg draws with the Cityscapes palette when a checkpoint names its
    classes but has no palette, and fails unless there are 19 classes: give
    such models a fixed palette of their own."""
    meta = getattr(model, 'dataset_meta', None) or {}
    classes = meta.get('classes')
    if classes and not meta.get('palette'):
        rng = np.random.default_rng(len(classes))
        palette = rng.integers(0, 256, (len(classes), 3)).tolist()
        model.dataset_meta = dict(meta, palette=palette)


def _dense_picture(inferencer, scope: str, image: str,
                   score_thr: float) -> np.ndarray:
    """The RGB picture of a detector's or segmentor's prediction."""
    kwargs = dict(return_vis=True)
    if scope == 'mmdet':
        kwargs.update(pred_score_thr=score_thr, no_save_vis=True)
    out = inferencer(image, **kwargs)
    vis = out['visualization']
    return vis[0] if isinstance(vis, list) else vis


def _classify(inferencer, image: str):
    """An mmpretrain inferencer's prediction for one image, through its
    ``preprocess`` and ``forward`` stages: its ``__call__`` also draws a
    progress bar on stdout with no trailing newline, which would run into
    the paths the CLI prints (det/seg inferencers are built with theirs
    off)."""
    (batch, ) = inferencer.preprocess([image], batch_size=1)
    (pred, ) = inferencer.forward(batch)
    return pred


def inference(inputs: str,
              config: Union[str, Config],
              checkpoint: Optional[str],
              out_dir: str,
              device: Optional[str] = None,
              score_thr: float = 0.3) -> List[str]:
    """Predict on an image or every image of a folder and save each
    visualised prediction as ``out_dir/<image name>.png``.

    Args:
        inputs: an image file or a folder of images.
        config: an mmdet, mmseg or mmpretrain config (file or Config).
        checkpoint: weights (.pth or .safetensors, path or URL).
        out_dir: where the PNGs go (created).
        device: 'cpu', 'cuda', ... Defaults to CUDA when available.
        score_thr: detections below this score are not drawn.

    Returns:
        list[str]: the PNG files written, in input order.
    """
    images = list_images(inputs)
    inferencer, scope = build_inferencer(config, checkpoint, device)
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for image in images:
        if scope == 'mmpretrain':
            pred = _classify(inferencer, image)
            rgb = _classification_picture(inferencer, image, pred)
        else:
            rgb = _dense_picture(inferencer, scope, image, score_thr)
        out_file = osp.join(out_dir,
                            osp.splitext(osp.basename(image))[0] + '.png')
        mmcv.imwrite(np.ascontiguousarray(rgb[..., ::-1]), out_file)
        written.append(out_file)
    return written


def _classification_picture(inferencer, image: str, pred) -> np.ndarray:
    """mmpretrain draws only when asked to show or save; draw into its
    visualizer and take the picture back."""
    from mmpretrain.visualization import UniversalVisualizer
    if inferencer.visualizer is None:
        inferencer.visualizer = UniversalVisualizer()
    rgb = mmcv.imread(image, channel_order='rgb')
    return inferencer.visualizer.visualize_cls(
        rgb, pred, classes=inferencer.classes, draw_gt=False,
        draw_pred=True, draw_score=True, name=osp.basename(image))
