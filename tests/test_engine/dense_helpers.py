"""Shared set-up for the detection/segmentation end-to-end tests: a tiny
generated dataset and the demo configs shrunk to a few iterations."""
import os
import subprocess
import sys

from mmengine.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
DET_CFG = os.path.join(ROOT, 'configs', 'demo',
                       'mask_rcnn_vrwkv_demo_shapes.py')
SEG_CFG = os.path.join(ROOT, 'configs', 'demo',
                       'upernet_vrwkv_demo_shapes.py')


def make_data(root, train=8, val=4, size=128):
    subprocess.run(
        [sys.executable, os.path.join(ROOT, 'tools', 'make_demo_data.py'),
         root, '--train', str(train), '--val', str(val), '--size',
         str(size)], check=True, capture_output=True)
    return root


def _single_process_loaders():
    options = {'train_dataloader.batch_size': 2}
    for split in ('train', 'val', 'test'):
        options[f'{split}_dataloader.num_workers'] = 0
        options[f'{split}_dataloader.persistent_workers'] = False
    return options


def det_options(data_root, work_dir):
    coco = os.path.join(data_root, 'coco') + '/'
    return {
        'work_dir': work_dir,
        'train_dataloader.dataset.data_root': coco,
        'val_dataloader.dataset.data_root': coco,
        'test_dataloader.dataset.data_root': coco,
        'val_evaluator.ann_file': coco + 'annotations/instances_val2017.json',
        'test_evaluator.ann_file': coco + 'annotations/instances_val2017.json',
        **_single_process_loaders(),
        'train_cfg.max_epochs': 1,
        'train_cfg.val_interval': 1,
        'param_scheduler': [],
        'default_hooks.checkpoint.interval': 1,
        'default_hooks.logger.interval': 1,
    }


def seg_options(data_root, work_dir, iters=2):
    ade = os.path.join(data_root, 'ade', 'ADEChallengeData2016')
    return {
        'work_dir': work_dir,
        'train_dataloader.dataset.data_root': ade,
        'val_dataloader.dataset.data_root': ade,
        'test_dataloader.dataset.data_root': ade,
        **_single_process_loaders(),
        'train_cfg.max_iters': iters,
        'train_cfg.val_interval': iters,
        'param_scheduler': [],
        'default_hooks.checkpoint.interval': iters,
        'default_hooks.logger.interval': 1,
    }


def load(path, options):
    cfg = Config.fromfile(path)
    cfg.merge_from_dict(options)
    return cfg


def cli_options(options):
    """--cfg-options arguments for mim/tools train.py."""
    out = []
    for key, value in options.items():
        if value == []:
            value = '[]'
        out.append(f'{key}={value}')
    return out
