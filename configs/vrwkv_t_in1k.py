# VRWKV-T on ImageNet-1K: the paper's recipe (300 epochs, AdamW, batch 1024
# = 8 GPUs x 128, Swin-style augmentation). Paper: 75.1% top-1.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
    './_base_/vrwkv_runtime.py',
]
model = dict(
    type='ImageClassifier',
    backbone=dict(type='VRWKV', arch='tiny', img_size=224, patch_size=16,
                  drop_path_rate=0.),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=192,
        init_cfg=None,  # the classifier-level init_cfg below covers it
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                  mode='original'),
        cal_acc=False),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
    ])

train_dataloader = dict(batch_size=128)
optim_wrapper = dict(
    clip_grad=dict(max_norm=5.0),
    # as the official mmcls 0.x recipe: only norms and biases skip decay
    paramwise_cfg=dict(flat_decay_mult=1.0))
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=2,
                                     save_last=True,
                                     backend_args=dict(
                                         backend='atomic_local')))
auto_scale_lr = dict(base_batch_size=1024)
