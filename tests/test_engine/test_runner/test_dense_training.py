"""A small VRWKV-Adapter Mask R-CNN and UperNet train for a few iterations
through mmengine's Runner on generated COCO / ADE20K data and evaluate with
the real CocoMetric / IoUMetric; `mim train` and `mim test` run as
subprocesses, for the VRWKV and the VRWKV6 demo models."""
import glob
import os
import subprocess
import sys

import pytest
import torch
from mmengine.runner import Runner

import mmvrwkv  # noqa: F401
from mmvrwkv.utils import load_checkpoint_file
from ..helpers import (DET6_CFG, DET_CFG, ROOT, SEG6_CFG, SEG_CFG, cli_options,
                       det_options, env, load, make_data, mim_exe, seg_options)


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return make_data(str(tmp_path_factory.mktemp('shapes')))


def test_mask_rcnn_trains_and_evaluates(data_root, tmp_path):
    cfg = load(DET_CFG, det_options(data_root, str(tmp_path)))
    runner = Runner.from_cfg(cfg)
    before = {k: v.clone() for k, v in runner.model.state_dict().items()}
    runner.train()
    after = runner.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(k.startswith('backbone.interactions') for k in changed)
    assert any(k.startswith('backbone.layers') for k in changed)
    metrics = runner.test()
    for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
        assert 0 <= metrics[key] <= 1
    ckpt = os.path.join(str(tmp_path), 'epoch_1.pth')
    state = load_checkpoint_file(ckpt)
    assert state['meta']['epoch'] == 1


def test_upernet_trains_and_evaluates(data_root, tmp_path):
    cfg = load(SEG_CFG, seg_options(data_root, str(tmp_path)))
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    assert 0 <= metrics['mIoU'] <= 100
    assert os.path.isfile(os.path.join(str(tmp_path), 'iter_2.pth'))


def mim(*args, cwd):
    exe = mim_exe()
    assert exe, 'openmim is not installed'
    proc = subprocess.run([exe, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize('package,config,options,checkpoint', [
    ('mmsegmentation', SEG_CFG, seg_options, 'iter_2.pth'),
    ('mmdet', DET_CFG, det_options, 'epoch_1.pth'),
    ('mmsegmentation', SEG6_CFG, seg_options, 'iter_2.pth'),
    ('mmdet', DET6_CFG, det_options, 'epoch_1.pth'),
], ids=['upernet', 'mask_rcnn', 'upernet_vrwkv6', 'mask_rcnn_vrwkv6'])
def test_mim_train_then_test(data_root, tmp_path, package, config, options,
                             checkpoint):
    work_dir = str(tmp_path / 'work')
    opts = cli_options(options(data_root, work_dir))
    mim('train', package, config, '--gpus', '0', '--cfg-options', *opts,
        cwd=ROOT)
    ckpt = os.path.join(work_dir, checkpoint)
    assert os.path.isfile(ckpt)
    show = str(tmp_path / 'show')
    out = mim('test', package, config, '--checkpoint', ckpt, '--gpus', '0',
              '--show-dir', show, '--cfg-options', *opts, cwd=ROOT)
    assert ('mIoU' in out) if package == 'mmsegmentation' else \
        ('bbox_mAP' in out and 'segm_mAP' in out)
    pngs = glob.glob(os.path.join(show, '**', '*.png'), recursive=True)
    assert len(pngs) == 4  # one visualisation per validation image


def test_eval_untrained_reports_the_baseline(data_root, tmp_path):
    opts = cli_options(seg_options(data_root, str(tmp_path)))
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'tools', 'eval_untrained.py'),
         SEG_CFG, '--cfg-options', *opts],
        cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines()
            if ln.startswith('untrained:')]
    assert len(line) == 1 and "'mIoU'" in line[0]
