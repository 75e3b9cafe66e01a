"""Shared set-up for the engine's end-to-end tests: a tiny generated
dataset, the demo configs shrunk to a few iterations (and, for the
distributed, resume and AMP tests, narrowed to seconds per run), and
running them in this process or through the real tools/train.py / mim."""
import os
import shutil
import socket
import subprocess
import sys

from mmengine.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
DET_CFG = os.path.join(ROOT, 'configs', 'demo',
                       'mask_rcnn_vrwkv_demo_shapes.py')
SEG_CFG = os.path.join(ROOT, 'configs', 'demo',
                       'upernet_vrwkv_demo_shapes.py')
DET6_CFG = os.path.join(ROOT, 'configs', 'demo',
                        'mask_rcnn_vrwkv6_demo_shapes.py')
SEG6_CFG = os.path.join(ROOT, 'configs', 'demo',
                        'upernet_vrwkv6_demo_shapes.py')


# ---- data -------------------------------------------------------------------
def make_data(root, train=8, val=4, size=128):
    """tools/make_demo_data.py into ``root`` (COCO and ADE20K layouts)."""
    subprocess.run(
        [sys.executable, os.path.join(ROOT, 'tools', 'make_demo_data.py'),
         root, '--train', str(train), '--val', str(val), '--size',
         str(size)], check=True, capture_output=True)
    return root


# ---- configs ----------------------------------------------------------------
def _single_process_loaders():
    options = {'train_dataloader.batch_size': 2}
    for split in ('train', 'val', 'test'):
        options[f'{split}_dataloader.num_workers'] = 0
        options[f'{split}_dataloader.persistent_workers'] = False
    return options


def det_options(data_root, work_dir):
    """The demo Mask R-CNN on ``data_root``: 1 epoch, then validation."""
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
    """The demo UperNet on ``data_root``: ``iters`` iterations, then
    validation."""
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


def tiny_seg_config(data_root, work_dir, *, max_iters, batch_size=2,
                    random=False, ckpt_interval=None, sync_bn=True):
    """The demo UperNet narrowed to 4 layers of 32 channels on 64x64 images,
    training only.

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


def tiny_mask_rcnn(data_root, work_dir):
    """The demo Mask R-CNN, narrowed, on 64x64 images, 1 epoch."""
    cfg = load(DET_CFG, det_options(data_root, work_dir))
    cfg.merge_from_dict({
        'model.backbone.arch': dict(embed_dims=32, num_layers=4),
        'model.backbone.img_size': 64,
        'model.backbone.conv_inplane': 8,
        'model.backbone.deform_num_heads': 2,
        'model.neck.in_channels': [32] * 4,
        'train_dataloader.dataset.pipeline': [
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
            dict(type='Resize', scale=(64, 64), keep_ratio=True),
            dict(type='PackDetInputs')],
    })
    return cfg


def dump(cfg, path):
    cfg.dump(path)
    return path


# ---- running ----------------------------------------------------------------
def build_runner(cfg):
    """As mm tools/train.py does: the config's ``runner_type`` if set."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    return RUNNERS.build(cfg) if 'runner_type' in cfg else \
        Runner.from_cfg(cfg)


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
    """mmseg's tools/train.py (what ``mim train mmsegmentation`` runs)."""
    import mmseg
    train = os.path.join(os.path.dirname(mmseg.__file__), '.mim', 'tools',
                         'train.py')
    return [sys.executable, train, cfg_path, *args]


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
