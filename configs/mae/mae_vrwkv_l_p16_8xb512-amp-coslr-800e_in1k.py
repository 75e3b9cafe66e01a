# MAE pre-training of VRWKV-L on ImageNet-1K: the recipe of
# mae_vrwkv_b_p16_8xb512-amp-coslr-800e_in1k.py with the VRWKV-L encoder
# (mmpretrain's ViT-L MAE recipe is the ViT-B one with the larger encoder).
_base_ = './mae_vrwkv_b_p16_8xb512-amp-coslr-800e_in1k.py'

model = dict(backbone=dict(arch='large'), neck=dict(embed_dim=1024))
