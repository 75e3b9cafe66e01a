"""Run a detector, segmentor or classifier on images and save pictures.

Built on the host libraries' inferencers (mmdet ``DetInferencer``, mmseg
``MMSegInferencer``, mmpretrain ``ImageClassificationInferencer``), chosen
by the config's ``default_scope``. They load weights through mmengine,
here with mmvrwkv's loaders (:func:`mmvrwkv.utils.enable_safe_loading`), so
``.pth`` and ``.safetensors`` both work and nothing pickled is executed.

Class names and palette come from the checkpoint's meta (``dataset_meta``,
or mmcv 1.x's ``CLASSES``/``PALETTE``), else from the config's dataset
(its ``metainfo`` over its class's ``METAINFO``), else inference stops with
an error saying so: the host inferencers would fall back to another
dataset's names (Cityscapes, COCO). Without a checkpoint the weights are
random, with a warning.
"""
import os
import os.path as osp
import warnings
from typing import List, Optional, Union

import mmcv
import numpy as np
import torch
from mmengine.config import Config

from ..utils import enable_safe_loading
from .official_checkpoint import _dataset_meta

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
    if checkpoint is None:
        warnings.warn('no checkpoint given: the weights are random (the '
                      "config's init_cfg is not applied)", UserWarning)
    device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
    # the inferencers load weights through mmengine, outside any runner
    enable_safe_loading()
    if scope == 'mmdet':
        from mmdet.apis import DetInferencer
        inferencer = _keeping_meta(DetInferencer)(
            model=cfg, weights=checkpoint, device=device,
            show_progress=False)
    elif scope == 'mmseg':
        from mmseg.apis import MMSegInferencer
        inferencer = _keeping_meta(MMSegInferencer)(
            model=cfg, weights=checkpoint, device=device)
    else:
        from mmpretrain.apis import ImageClassificationInferencer
        inferencer = ImageClassificationInferencer(
            model=cfg, pretrained=checkpoint or False, device=device)
    _set_dataset_meta(inferencer, scope, cfg)
    return inferencer, scope


def _keeping_meta(inferencer_class):
    """``inferencer_class`` (mmdet's or mmseg's) that keeps the loaded
    checkpoint's meta in ``checkpoint_meta`` (its own
    ``_load_weights_to_model`` replaces missing class names with another
    dataset's)."""

    class KeepingMeta(inferencer_class):
        checkpoint_meta: dict = {}

        def _load_weights_to_model(self, model, checkpoint, cfg):
            meta = (checkpoint or {}).get('meta')
            self.checkpoint_meta = dict(meta) if isinstance(meta,
                                                            dict) else {}
            super()._load_weights_to_model(model, checkpoint, cfg)

    KeepingMeta.__name__ = inferencer_class.__name__
    return KeepingMeta


def config_dataset_meta(cfg: Config) -> dict:
    """The class names and palette of the config's dataset (test, val, then
    train dataloader): its ``metainfo`` over the dataset class's
    ``METAINFO``, without loading any data; {} when there are none."""
    from mmengine.registry import DATASETS
    for split in ('test', 'val', 'train'):
        dataset = (cfg.get(f'{split}_dataloader') or {}).get('dataset')
        while isinstance(dataset, dict) and 'dataset' in dataset:
            dataset = dataset['dataset']  # wrappers (RepeatDataset, ...)
        if not isinstance(dataset, dict):
            continue
        meta = {}
        dataset_type = dataset.get('type')
        if isinstance(dataset_type, str):
            cls = DATASETS.get(dataset_type)
            meta.update(getattr(cls, 'METAINFO', None) or {})
        elif dataset_type is not None:
            meta.update(getattr(dataset_type, 'METAINFO', None) or {})
        meta.update(dataset.get('metainfo') or {})
        if meta.get('classes'):
            return {k: list(v) if isinstance(v, (list, tuple)) else v
                    for k, v in meta.items() if k in ('classes', 'palette')}
    return {}


def _set_dataset_meta(inferencer, scope: str, cfg: Config) -> None:
    """Class names and palette: the checkpoint's, else the config's
    dataset's, else a ValueError."""
    if scope == 'mmpretrain':  # get_model keeps a checkpoint's classes
        meta = dict(getattr(inferencer.model, '_dataset_meta', None) or {})
    else:
        meta = _dataset_meta(inferencer.checkpoint_meta)
    if not meta.get('classes'):
        meta = config_dataset_meta(cfg)
    if not meta.get('classes'):
        raise ValueError(
            f'no class names: the checkpoint has none in its meta '
            f"(dataset_meta or CLASSES) and the config's dataset "
            f'({getattr(cfg, "filename", "")}) defines none (metainfo): add '
            "metainfo=dict(classes=...) to the config's test_dataloader "
            'dataset, or use a checkpoint that names its classes')
    model = inferencer.model
    model.dataset_meta = meta
    _complete_palette(model)
    meta = dict(model.dataset_meta)
    if meta.get('palette') is not None:  # mmdet's drawing takes tuples
        meta['palette'] = [tuple(int(c) for c in color)
                           for color in meta['palette']]
    model.dataset_meta = meta
    if scope == 'mmdet':
        inferencer.visualizer.dataset_meta = meta
    elif scope == 'mmseg':
        inferencer.visualizer.set_dataset_meta(meta['classes'],
                                               meta['palette'])
    else:
        inferencer.classes = meta['classes']


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
        checkpoint: weights (.pth or .safetensors, path or URL); None runs
            the model with random weights (a warning says so).
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
