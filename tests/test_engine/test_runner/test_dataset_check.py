"""PortableRunner names the annotation file when a dataset cannot be read
or is empty; grayscale and RGBA files load as 3-channel images; images
without instances train when not filtered (docs/reliability.md)."""
import json
import math
import os

import numpy as np
import pytest
import torch
from mmcv.transforms import LoadImageFromFile
from mmengine.registry import init_default_scope
from PIL import Image

import mmvrwkv  # noqa: F401
from mmvrwkv.engine.runner import build_dataset_checked
from ..helpers import build_runner, make_data, tiny_mask_rcnn


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    root = make_data(str(tmp_path_factory.mktemp('shapes')), train=2, val=1,
                     size=64)
    return os.path.join(root, 'coco')


def dataset_cfg(coco, ann_file, **kwargs):
    return dict(type='CocoDataset', data_root=coco + '/', ann_file=ann_file,
                data_prefix=dict(img='train2017/'), pipeline=[],
                filter_cfg=dict(filter_empty_gt=True, min_size=0), **kwargs)


def write(path, content):
    with open(path, 'w') as f:
        f.write(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def original(coco):
    with open(os.path.join(coco, 'annotations',
                           'instances_train2017.json')) as f:
        return json.load(f)


@pytest.mark.parametrize('content', ['', '{"images": [', ],
                         ids=['empty-file', 'truncated'])
def test_annotation_file_not_json(coco, tmp_path, content):
    init_default_scope('mmdet')
    path = write(tmp_path / 'bad.json', content)
    with pytest.raises(ValueError, match=r'bad\.json.*not valid JSON'):
        build_dataset_checked(dataset_cfg(coco, path))


@pytest.mark.parametrize('change', [dict(images=[], annotations=[]),
                                    dict(annotations=[])],
                         ids=['no-images', 'no-instances'])
def test_empty_dataset(coco, tmp_path, change):
    init_default_scope('mmdet')
    path = write(tmp_path / 'empty.json', {**original(coco), **change})
    with pytest.raises(ValueError,
                       match=r'empty\.json.*has no samples.*filter_empty_gt'):
        build_dataset_checked(dataset_cfg(coco, path))


def test_images_without_instances_kept_when_not_filtered(coco, tmp_path):
    init_default_scope('mmdet')
    path = write(tmp_path / 'none.json', {**original(coco),
                                          'annotations': []})
    cfg = dataset_cfg(coco, path)
    cfg['filter_cfg'] = dict(filter_empty_gt=False)
    assert len(build_dataset_checked(cfg)) == 2


@pytest.mark.parametrize('mode', ['L', 'RGBA', 'LA', 'P'])
def test_grayscale_and_alpha_images_load_as_three_channels(tmp_path, mode):
    img = Image.fromarray(np.random.default_rng(0).integers(
        0, 255, (20, 30, 4), dtype=np.uint8), 'RGBA').convert(mode)
    path = str(tmp_path / f'x_{mode}.png')
    img.save(path)
    out = LoadImageFromFile()(dict(img_path=path))
    assert out['img'].shape == (20, 30, 3)


@pytest.mark.slow
def test_mask_rcnn_trains_on_images_without_instances(tmp_path):
    root = make_data(str(tmp_path / 'data'), train=2, val=1, size=64)
    coco = os.path.join(root, 'coco')
    path = write(tmp_path / 'none.json', {**original(coco),
                                          'annotations': []})
    cfg = tiny_mask_rcnn(root, str(tmp_path / 'work'))
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.train_cfg.pop('val_interval', None)
    cfg.merge_from_dict({
        'train_dataloader.dataset.ann_file': path,
        'train_dataloader.dataset.filter_cfg': dict(filter_empty_gt=False)})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runner = build_runner(cfg)
        runner.train()
    finally:
        torch.set_num_threads(threads)
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert runner.iter == 1 and all(math.isfinite(x) for x in losses)
