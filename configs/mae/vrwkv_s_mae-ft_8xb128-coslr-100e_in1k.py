# Fine-tuning VRWKV-S on ImageNet-1K from its MAE pre-training
# (mae_vrwkv_s_p16_8xb512-amp-coslr-800e_in1k.py): the recipe of
# vrwkv_b_mae-ft_8xb128-coslr-100e_in1k.py with the VRWKV-S backbone.
_base_ = './vrwkv_b_mae-ft_8xb128-coslr-100e_in1k.py'

model = dict(
    backbone=dict(
        arch='small',
        init_cfg=dict(
            checkpoint='work_dirs/mae_vrwkv_s_p16_8xb512-amp-coslr-800e_in1k/'
            'epoch_800.pth')),
    head=dict(in_channels=384))
