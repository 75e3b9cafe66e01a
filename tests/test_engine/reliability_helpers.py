"""A tiny VRWKV-Adapter UperNet config for the distributed, resume and AMP
tests: seconds per run, trained through the real mmseg tools/train.py."""
import os
import shutil
import socket
import subprocess
import sys

import mmseg
from mmengine.config import Config

from .dense_helpers import ROOT, SEG_CFG

MMSEG_TRAIN = os.path.join(os.path.dirname(mmseg.__file__), '.mim', 'tools',
                           'train.py')


def tiny_seg_config(data_root, work_dir, *, max_iters, batch_size=2,
                    random=False, ckpt_interval=None, sync_bn=True):
    """The demo UperNet narrowed to 4 layers of 32 channels on 64x64 images.

    Args:
        random (bool): random flips and drop path (to exercise RNG state);
            otherwise every step is a deterministic function of the weights.
        sync_bn (bool): SyncBN in the adapter and heads (the paper configs'
            norm), else BN.
    """
    ade = os.path.join(data_root, 'ade', 'ADEChallengeData2016')
    norm = dict(type='SyncBN' if sync_bn else 'BN', requires_grad=True)
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', reduce_zero_label=True),
        dict(type='Resize', scale=(64, 64), keep_ratio=False),
    ]
    if random:
        pipeline.append(dict(type='RandomFlip', prob=0.5))
    pipeline.append(dict(type='PackSegInputs'))
    cfg = Config.fromfile(SEG_CFG)
    cfg.merge_from_dict({
        'work_dir': work_dir,
        'model.data_preprocessor.size': (64, 64),
        'model.backbone.arch': dict(embed_dims=32, num_layers=4),
        'model.backbone.img_size': 64,
        'model.backbone.conv_inplane': 8,
        'model.backbone.deform_num_heads': 2,
        'model.backbone.drop_path_rate': 0.2 if random else 0.0,
        'model.backbone.norm_cfg': norm,
        'model.decode_head.in_channels': [32] * 4,
        'model.decode_head.channels': 16,
        'model.decode_head.dropout_ratio': 0.0,
        'model.decode_head.norm_cfg': norm,
        'model.auxiliary_head.in_channels': 32,
        'model.auxiliary_head.channels': 16,
        'model.auxiliary_head.dropout_ratio': 0.0,
        'model.auxiliary_head.norm_cfg': norm,
        'model.test_cfg': dict(mode='whole'),
        'train_dataloader.batch_size': batch_size,
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'train_dataloader.sampler': dict(type='InfiniteSampler',
                                         shuffle=random),
        'train_dataloader.dataset.data_root': ade,
        'train_dataloader.dataset.pipeline': pipeline,
        'train_cfg': dict(type='IterBasedTrainLoop', max_iters=max_iters,
                          val_interval=max_iters + 1),
        'optim_wrapper': dict(
            type='OptimWrapper',
            optimizer=dict(type='SGD', lr=0.01, momentum=0.9,
                           weight_decay=1e-4),
            clip_grad=None, _delete_=True),
        'param_scheduler': [dict(type='LinearLR', start_factor=0.1,
                                 by_epoch=False, begin=0, end=max_iters)],
        'default_hooks.checkpoint.interval': ckpt_interval or max_iters,
        'default_hooks.checkpoint.max_keep_ckpts': -1,
        'default_hooks.logger.interval': 1,
        'default_hooks.visualization': dict(type='SegVisualizationHook'),
        'env_cfg.dist_cfg.backend': 'gloo',
        'randomness': dict(seed=0, deterministic=True),
    })
    # training only: no validation loop
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
    cfg.test_dataloader = cfg.test_evaluator = cfg.test_cfg = None
    return cfg


def dump(cfg, path):
    cfg.dump(path)
    return path


def env(bin_dir=None):
    """Subprocess environment that imports this checkout's mmvrwkv (and
    finds the programs in ``bin_dir`` first)."""
    out = dict(os.environ)
    out['PYTHONPATH'] = ROOT + os.pathsep + out.get('PYTHONPATH', '')
    out['OMP_NUM_THREADS'] = '1'
    if bin_dir:
        out['PATH'] = str(bin_dir) + os.pathsep + out.get('PATH', '')
    return out


def train_cmd(cfg_path, *args):
    return [sys.executable, MMSEG_TRAIN, cfg_path, *args]


def run(cmd, timeout=600, bin_dir=None):
    proc = subprocess.run(cmd, cwd=ROOT, env=env(bin_dir),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout + proc.stderr


def mim_exe():
    """The mim of this interpreter's environment, even if not on PATH."""
    exe = os.path.join(os.path.dirname(sys.executable), 'mim')
    return exe if os.path.isfile(exe) else shutil.which('mim')


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def build_runner(cfg):
    """As mm tools/train.py does: the config's ``runner_type`` if set."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    return RUNNERS.build(cfg) if 'runner_type' in cfg else \
        Runner.from_cfg(cfg)
