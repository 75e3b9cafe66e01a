# VRWKV-S on ImageNet-1K (8 GPUs x 128). Paper: 80.1% top-1.
_base_ = './vrwkv_t_in1k.py'

model = dict(
    backbone=dict(arch='small', drop_path_rate=0.3),
    head=dict(in_channels=384),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]))
