# MAE pre-training of VRWKV-S on ImageNet-1K: the recipe of
# mae_vrwkv_b_p16_8xb512-amp-coslr-800e_in1k.py with the VRWKV-S encoder.
_base_ = './mae_vrwkv_b_p16_8xb512-amp-coslr-800e_in1k.py'

model = dict(backbone=dict(arch='small'), neck=dict(embed_dim=384))
