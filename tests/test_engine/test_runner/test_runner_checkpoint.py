"""A real mmengine Runner trains a VRWKV classifier on a small image folder,
writes a checkpoint, and that checkpoint loads with weights_only=True: in
a config of one's own, ``custom_imports`` plus the one line that turns on
CheckpointSafetyHook."""
import os

import numpy as np
from mmengine.runner import Runner
from PIL import Image

import mmvrwkv  # noqa: F401  (registers VRWKV and CheckpointSafetyHook)
from mmvrwkv.utils import load_checkpoint_file


def make_image_folder(root, classes=('circle', 'square'), per_class=4):
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(per_class):
            img = np.full((40, 48, 3), 30, np.uint8)
            img[10:30, 12:36] = 200 if c else rng.integers(0, 255, 3)
            Image.fromarray(img).save(os.path.join(root, name, f'{i}.png'))


def classifier_cfg(work_dir, data_root):
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=32),
        dict(type='PackInputs'),
    ]
    loader = dict(
        batch_size=4, num_workers=0,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(type='CustomDataset', data_root=data_root,
                     pipeline=pipeline))
    return dict(
        default_scope='mmpretrain',
        work_dir=work_dir,
        model=dict(
            type='ImageClassifier',
            data_preprocessor=dict(num_classes=2, mean=[127.5] * 3,
                                   std=[127.5] * 3, to_rgb=True),
            backbone=dict(type='VRWKV', arch=dict(embed_dims=32,
                                                  num_layers=2),
                          img_size=32, patch_size=8,
                          out_type='avg_featmap'),
            head=dict(type='LinearClsHead', num_classes=2, in_channels=32,
                      loss=dict(type='CrossEntropyLoss'))),
        train_dataloader=loader,
        train_cfg=dict(by_epoch=True, max_epochs=2),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook',
                                           interval=1),
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[dict(type='CheckpointSafetyHook')],
        env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo')),
        randomness=dict(seed=0),
        log_level='WARNING',
    )


def test_runner_checkpoint_loads_weights_only(tmp_path,
                                              mmengine_registries):
    data_root = str(tmp_path / 'data')
    make_image_folder(data_root)
    runner = Runner.from_cfg(classifier_cfg(str(tmp_path / 'work'),
                                            data_root))
    runner.train()
    ckpt = tmp_path / 'work' / 'epoch_2.pth'
    assert ckpt.exists()
    state = load_checkpoint_file(str(ckpt), map_location='cpu')
    assert 'message_hub' in state and 'optimizer' in state
    assert any(k.startswith('backbone.layers.0.att') for k in
               state['state_dict'])
    # ... and through a fresh runner resuming from it (mmengine's own
    # loader refuses the message hub's types with torch's weights-only
    # default).
    cfg = classifier_cfg(str(tmp_path / 'work2'), data_root)
    cfg.update(load_from=str(ckpt), resume=True,
               train_cfg=dict(by_epoch=True, max_epochs=3))
    resumed = Runner.from_cfg(cfg)
    resumed.train()
    assert resumed.epoch == 3
