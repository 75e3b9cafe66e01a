# VRWKV-B on ImageNet-1K (16 GPUs x 64). Paper: 82.0% top-1.
_base_ = './vrwkv_s_in1k.py'

model = dict(
    backbone=dict(arch='base', drop_path_rate=0.5),
    head=dict(in_channels=768))
train_dataloader = dict(batch_size=64)
