# MAE pre-training of VRWKV-T on ImageNet-1K: the recipe of
# mae_vrwkv_b_p16_8xb512-amp-coslr-800e_in1k.py (mmpretrain's MAE) with the
# VRWKV-T encoder; the decoder stays 8 blocks of width 512, as MAE keeps one
# decoder for every encoder size.
_base_ = './mae_vrwkv_b_p16_8xb512-amp-coslr-800e_in1k.py'

model = dict(backbone=dict(arch='tiny'), neck=dict(embed_dim=192))
