# A small VRWKV-Adapter UperNet trained from scratch on the synthetic shapes
# dataset in ADE20K layout (tools/make_demo_data.py): the CPU demo of the
# README. Same model family and training machinery as ../upernet_vrwkv_t.py,
# narrowed (4 layers of 96 channels, 64-channel heads, 256x256 crops).
_base_ = '../upernet_vrwkv_t.py'

data_root = 'data/shapes/ade/ADEChallengeData2016'
# The ADE20K folder layout and label convention (0 = unlabelled, ignored
# through reduce_zero_label); the classes are the generator's.
dataset_type = 'BaseSegDataset'
metainfo = dict(
    classes=('background', 'circle', 'square', 'triangle'),
    palette=[[0, 0, 0], [220, 20, 60], [0, 128, 255], [255, 200, 0]])
num_classes = 4
crop_size = (256, 256)

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='VRWKVAdapter',
        arch=dict(embed_dims=96, num_layers=4),
        img_size=256,
        conv_inplane=16,
        deform_num_heads=3,
        deform_ratio=1.0,
        interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]],
        vrwkv_feature='per_interaction',
        norm_cfg=dict(type='BN', requires_grad=True)),
    decode_head=dict(
        in_channels=[96, 96, 96, 96], channels=64, num_classes=num_classes,
        norm_cfg=dict(type='BN', requires_grad=True)),
    auxiliary_head=dict(
        in_channels=96, channels=64, num_classes=num_classes,
        norm_cfg=dict(type='BN', requires_grad=True)),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(170, 170)))

dataset = dict(
    type=dataset_type,
    data_root=data_root,
    metainfo=metainfo,
    img_suffix='.jpg',
    seg_map_suffix='.png',
    reduce_zero_label=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(
        type='RandomResize',
        scale=(512, 256),
        ratio_range=(0.75, 1.5),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(512, 256), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(
        _delete_=True,
        **dataset,
        data_prefix=dict(
            img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=1,
    dataset=dict(
        _delete_=True,
        **dataset,
        data_prefix=dict(
            img_path='images/validation',
            seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 400
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=50),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=50,
         end=max_iters),
]
optim_wrapper = dict(
    optimizer=dict(lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(layer_decay_rate=0.9))
# with --show-dir, save the visualisation of every test image
default_hooks = dict(
    visualization=dict(interval=1),
    logger=dict(interval=20),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1, save_best=None))
randomness = dict(seed=0)
