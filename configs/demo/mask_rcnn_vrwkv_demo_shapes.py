# A small VRWKV-Adapter Mask R-CNN trained from scratch on the synthetic
# shapes dataset (tools/make_demo_data.py): the CPU demo of the README.
# Same model family and training machinery as ../mask_rcnn_vrwkv_t.py,
# narrowed (4 layers of 96 channels, 64-channel FPN and heads) so a few
# minutes on a 2-core CPU are enough to learn.
_base_ = '../mask_rcnn_vrwkv_t.py'

data_root = 'data/shapes/coco/'
metainfo = dict(
    classes=('circle', 'square', 'triangle'),
    palette=[(220, 20, 60), (0, 128, 255), (255, 200, 0)])
num_classes = 3
width = 64

model = dict(
    backbone=dict(
        _delete_=True,
        type='VRWKVAdapter',
        arch=dict(embed_dims=96, num_layers=4),
        img_size=256,
        conv_inplane=16,
        deform_num_heads=3,
        deform_ratio=1.0,
        interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]],
        vrwkv_feature='final',
        norm_cfg=dict(type='BN', requires_grad=True)),
    neck=dict(in_channels=[96, 96, 96, 96], out_channels=width),
    rpn_head=dict(in_channels=width, feat_channels=width),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=dict(
            in_channels=width, fc_out_channels=256,
            num_classes=num_classes),
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(
            num_convs=2, in_channels=width, conv_out_channels=width,
            num_classes=num_classes)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=300),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=300),
        rcnn=dict(max_per_img=20)))

image_scale = (224, 224)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(
        data_root=data_root, metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=1,
    dataset=dict(
        data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=100),
    dict(type='CosineAnnealingLR', T_max=max_epochs, eta_min=1e-5,
         by_epoch=True, begin=0, end=max_epochs),
]
optim_wrapper = dict(
    optimizer=dict(lr=5e-4, weight_decay=0.05),
    paramwise_cfg=dict(layer_decay_rate=0.9),
    clip_grad=dict(max_norm=5.0))
# with --show-dir, save the visualisation of every test image
default_hooks = dict(
    visualization=dict(interval=1),
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1, save_best=None))
randomness = dict(seed=0)
