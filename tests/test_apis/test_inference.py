"""mmvrwkv.apis.inference and tools/infer.py write one PNG per image for a
segmentor, a detector and a classifier (real mm inferencers, small
untrained models saved as checkpoints)."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from mmvrwkv.apis import build_model, inference, list_images
from mmvrwkv.utils import save_safetensors

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
SEG_CFG = os.path.join(ROOT, 'configs', 'demo',
                       'upernet_vrwkv_demo_shapes.py')
DET_CFG = os.path.join(ROOT, 'configs', 'demo',
                       'mask_rcnn_vrwkv_demo_shapes.py')


@pytest.fixture(scope='module')
def image_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp('images')
    rng = np.random.default_rng(0)
    for name, size in (('a.jpg', (96, 128)), ('b.png', (80, 64))):
        img = np.full((*size, 3), 20, np.uint8)
        img[10:50, 10:40] = rng.integers(100, 255, 3)
        Image.fromarray(img).save(root / name)
    (root / 'notes.txt').write_text('not an image')
    return str(root)


def save_untrained(cfg_path, path, classes):
    """The config's model, untrained, saved with ``classes`` in its meta
    (none: no meta)."""
    model = build_model(cfg_path)
    meta = dict(dataset_meta=dict(classes=list(classes))) if classes else {}
    if str(path).endswith('.safetensors'):
        save_safetensors(model.state_dict(), str(path), meta)
    else:
        torch.save(dict(state_dict=model.state_dict(), meta=meta), path)
    return str(path)


def check_pngs(written, inputs, out_dir):
    sources = list_images(inputs)
    assert [os.path.basename(p) for p in written] == [
        os.path.splitext(os.path.basename(s))[0] + '.png' for s in sources]
    for path, src in zip(written, sources):
        assert os.path.dirname(path) == str(out_dir)
        assert Image.open(path).size == Image.open(src).size


@pytest.mark.slow
def test_segmentor_and_detector(image_dir, tmp_path):
    image = os.path.join(image_dir, 'b.png')   # one image: dense models
    ckpt = save_untrained(SEG_CFG, tmp_path / 'seg.safetensors',
                          ('background', 'circle', 'square', 'triangle'))
    written = inference(image, SEG_CFG, ckpt, str(tmp_path / 'seg'),
                        device='cpu')
    check_pngs(written, image, tmp_path / 'seg')

    ckpt = save_untrained(DET_CFG, tmp_path / 'det.pth',
                          ('circle', 'square', 'triangle'))
    written = inference(image, DET_CFG, ckpt, str(tmp_path / 'det'),
                        device='cpu', score_thr=0.0)
    check_pngs(written, image, tmp_path / 'det')


def run_infer(*args):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, 'tools', 'infer.py'),
         *map(str, args)], cwd=ROOT, capture_output=True, text=True,
        timeout=600)


def test_classifier_cli(image_dir, tmp_path):
    cfg = tmp_path / 'tiny_cls.py'
    cfg.write_text(
        f"_base_ = '{ROOT}/configs/vrwkv_t_in1k.py'\n"
        "model = dict(backbone=dict(arch=dict(_delete_=True, embed_dims=32, "
        "num_layers=2)), head=dict(in_channels=32, num_classes=3))\n")
    ckpt = save_untrained(str(cfg), tmp_path / 'cls.pth', ('x', 'y', 'z'))
    out_dir = tmp_path / 'vis'
    proc = run_infer(image_dir, cfg, ckpt, '--out-dir', out_dir, '--device',
                     'cpu')
    assert proc.returncode == 0, proc.stderr[-3000:]
    # stdout: the written paths and nothing else (logs go to stderr)
    written = proc.stdout.splitlines()
    assert len(written) == 2   # a.jpg, b.png; not notes.txt
    check_pngs(written, image_dir, out_dir)
    proc = run_infer(tmp_path / 'nothing', cfg, ckpt)
    assert proc.returncode == 1
    assert 'neither an image nor a folder' in proc.stderr
    proc = run_infer(image_dir, cfg, tmp_path / 'none.pth')
    assert proc.returncode == 1
    assert re.search('checkpoint .* does not exist', proc.stderr)


SEG_CLASSES = ['background', 'circle', 'square', 'triangle']


def test_class_names_from_checkpoint_then_config(tmp_path):
    """The segmentor's class names and palette: the checkpoint's when it
    has them; else the config's dataset's (the host inferencer would take
    Cityscapes'); no checkpoint at all runs random weights with a
    warning."""
    from mmvrwkv.apis import build_inferencer
    named = save_untrained(SEG_CFG, tmp_path / 'named.pth',
                           ('a', 'b', 'c', 'd'))
    inferencer, _ = build_inferencer(SEG_CFG, named, 'cpu')
    assert inferencer.model.dataset_meta['classes'] == ['a', 'b', 'c', 'd']
    plain = save_untrained(SEG_CFG, tmp_path / 'plain.pth', None)
    inferencer, _ = build_inferencer(SEG_CFG, plain, 'cpu')
    meta = inferencer.model.dataset_meta
    assert list(meta['classes']) == SEG_CLASSES
    assert [list(c) for c in meta['palette']] == [
        [0, 0, 0], [220, 20, 60], [0, 128, 255], [255, 200, 0]]
    assert list(inferencer.visualizer.dataset_meta['classes']) == \
        SEG_CLASSES
    with pytest.warns(UserWarning, match='the weights are random'):
        inferencer, _ = build_inferencer(SEG_CFG, None, 'cpu')
    assert list(inferencer.model.dataset_meta['classes']) == SEG_CLASSES


def test_no_class_names_anywhere_is_an_error(tmp_path):
    from mmengine.config import Config

    from mmvrwkv.apis import build_inferencer
    cfg = Config.fromfile(SEG_CFG)
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].dataset.pop('metainfo')
    plain = save_untrained(SEG_CFG, tmp_path / 'plain.pth', None)
    with pytest.raises(ValueError, match='no class names: the checkpoint '
                       'has none'):
        build_inferencer(cfg, plain, 'cpu')


def test_cli_without_checkpoint(image_dir, tmp_path):
    """tools/infer.py with a config alone: random weights, a warning on
    stderr, the paths on stdout."""
    cfg = tmp_path / 'tiny_cls.py'
    cfg.write_text(
        f"_base_ = '{ROOT}/configs/vrwkv_t_in1k.py'\n"
        "model = dict(backbone=dict(arch=dict(_delete_=True, embed_dims=32, "
        "num_layers=2)), head=dict(in_channels=32))\n")
    out_dir = tmp_path / 'vis'
    proc = run_infer(os.path.join(image_dir, 'a.jpg'), cfg, '--out-dir',
                     out_dir, '--device', 'cpu')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == [str(out_dir / 'a.png')]
    assert 'the weights are random' in proc.stderr
