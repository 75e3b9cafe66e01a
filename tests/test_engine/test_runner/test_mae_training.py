"""MAE pre-training through `mim train mmpretrain` on the CPU, VRWKV and
VRWKV6 (the configs/mae recipes shrunk to one short epoch on generated
images without labels), then the fine-tuning configs load the encoder of
the checkpoint with no missing backbone key."""
import os
import subprocess

import pytest

import mmvrwkv  # noqa: F401
from mmvrwkv.apis import build_model
from mmvrwkv.utils import load_checkpoint_file
from ..helpers import ROOT, make_data, mim_exe

PRETRAIN = {
    'VRWKV': 'mae_vrwkv_t_p16_8xb512-amp-coslr-800e_in1k.py',
    'VRWKV6': 'mae_vrwkv6_t_p16_8xb512-amp-coslr-800e_in1k.py',
}
FINETUNE = {
    'VRWKV': 'vrwkv_t_mae-ft_8xb128-coslr-100e_in1k.py',
    'VRWKV6': 'vrwkv6_t_mae-ft_8xb128-coslr-100e_in1k.py',
}
SMALL = dict(embed_dims=64, num_layers=2)
# one epoch of 8 images, batch 4, 64 px (4 x 4 patches), fp32, one process
SHRUNK = """_base_ = '{base}'
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=64, num_layers=2),
                  img_size=64, mask_mode='{mode}'),
    neck=dict(num_patches=16, embed_dim=64, decoder_embed_dim=64,
              decoder_depth=1, mask_mode='{mode}'))
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, type='CustomDataset', data_root='{data}',
                 with_label=False, pipeline=[
                     dict(type='LoadImageFromFile'),
                     dict(type='RandomResizedCrop', scale=64),
                     dict(type='PackInputs')]))
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-3))
param_scheduler = []
train_cfg = dict(max_epochs=1)
default_hooks = dict(logger=dict(interval=1))
resume = False
"""


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    root = make_data(str(tmp_path_factory.mktemp('shapes')), train=8,
                     val=1, size=96)
    return os.path.join(root, 'ade', 'ADEChallengeData2016', 'images',
                        'training')


@pytest.mark.slow
@pytest.mark.parametrize('family, mode', [('VRWKV', 'grid'),
                                          ('VRWKV6', 'official')])
def test_mim_train_mae_then_fine_tuning_loads_it(images, tmp_path, family,
                                                 mode):
    cfg = tmp_path / 'mae.py'
    cfg.write_text(SHRUNK.format(
        base=os.path.join(ROOT, 'configs', 'mae', PRETRAIN[family]),
        mode=mode, data=images))
    work_dir = tmp_path / 'work'
    exe = mim_exe()
    assert exe, 'openmim is not installed'
    proc = subprocess.run(
        [exe, 'train', 'mmpretrain', str(cfg), '--gpus', '0', '--work-dir',
         str(work_dir)], cwd=ROOT, capture_output=True, text=True,
        timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'loss:' in proc.stdout + proc.stderr
    ckpt = work_dir / 'epoch_1.pth'
    assert ckpt.is_file()
    # the fine-tuning config's backbone takes the encoder, key for key
    fine = build_model(
        os.path.join(ROOT, 'configs', 'mae', FINETUNE[family]),
        {'model.backbone.arch': dict(_delete_=True, **SMALL),
         'model.backbone.img_size': 64,
         'model.head.in_channels': 64}, init_cfg=False)
    state = load_checkpoint_file(str(ckpt))['state_dict']
    encoder = {k[len('backbone.'):]: v for k, v in state.items()
               if k.startswith('backbone.')}
    result = fine.backbone.load_state_dict(encoder, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
