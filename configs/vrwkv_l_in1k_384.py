# VRWKV-L on ImageNet-1K at 384 px: the architecture of the released
# vrwkv_l_22kto1k_384.pth (pre-trained on ImageNet-22K at 192 px, fine-tuned
# at 384 in the official InternImage-based code, official
# classification_internimage/configs/vrwkv_l_22kto1k_384.yaml). Paper: 86.0%
# top-1. For evaluation and inference of that checkpoint after
# tools/convert_official.py:
#   mim test mmpretrain configs/vrwkv_l_in1k_384.py --checkpoint vrwkv_l.pth
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_384.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
    './_base_/vrwkv_runtime.py',
]

model = dict(
    type='ImageClassifier',
    # The position embedding keeps the 12x12 grid of the 192 px
    # pre-training and is interpolated to 24x24 at every forward, as in the
    # official model.
    backbone=dict(type='VRWKV', arch='large', img_size=192, patch_size=16,
                  drop_path_rate=0.1),
    neck=dict(type='GlobalAveragePooling'),
    # the official MLP head: Linear(1024, 3072), Tanh, Linear(3072, 1000)
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=1000,
        in_channels=1024,
        hidden_dim=3072,
        act_cfg=dict(type='Tanh'),
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                  mode='original')))

# official evaluation: bicubic resize of the short side to 384, centre crop
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=384, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=384),
    dict(type='PackInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
# checkpoints written to a temporary name, then renamed
default_hooks = dict(
    checkpoint=dict(backend_args=dict(backend='atomic_local')))
