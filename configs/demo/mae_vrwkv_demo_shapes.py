# MAE pre-training of the demo's small VRWKV encoder (4 layers of 96
# channels, the backbone of upernet_vrwkv_demo_shapes.py) on the images of
# the synthetic shapes dataset, without their labels (tools/make_demo_data.py,
# ADE20K layout: images/training). The recipe of
# ../mae/mae_vrwkv_b_p16_8xb512-amp-coslr-800e_in1k.py, narrowed: 256 px
# crops (16 x 16 patches, 64 visible), a decoder of 2 blocks of 96
# channels, 40 epochs of the 200 images, batch 16, a larger learning rate.
#   mim train mmpretrain configs/demo/mae_vrwkv_demo_shapes.py --gpus 0
_base_ = '../mae/mae_vrwkv_t_p16_8xb512-amp-coslr-800e_in1k.py'

mask_mode = 'grid'
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=96, num_layers=4),
                  img_size=256,
                  mask_mode=mask_mode),
    neck=dict(num_patches=256, embed_dim=96, decoder_embed_dim=96,
              decoder_depth=2, mask_mode=mask_mode))

data_root = 'data/shapes/ade/ADEChallengeData2016'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=256, crop_ratio_range=(0.5, 1.0),
         backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=16,
    num_workers=1,
    persistent_workers=False,
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=data_root,
        data_prefix='images/training',
        with_label=False,
        pipeline=train_pipeline))

max_epochs = 40
# fp32 (the recipe's AMP is bfloat16 on a CPU, slower on most)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.95),
                   weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={
        'ln': dict(decay_mult=0.0),
        'bias': dict(decay_mult=0.0),
        'pos_embed': dict(decay_mult=0.),
        'mask_token': dict(decay_mult=0.)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=4,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 4, by_epoch=True,
         begin=4, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
auto_scale_lr = dict(enable=False)
randomness = dict(seed=0, diff_rank_seed=False)
resume = False
