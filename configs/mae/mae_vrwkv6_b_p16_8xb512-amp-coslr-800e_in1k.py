# MAE pre-training of VRWKV6-B on ImageNet-1K: the recipe of
# mae_vrwkv_b_p16_8xb512-amp-coslr-800e_in1k.py (mmpretrain's MAE) with the
# masked VRWKV6-B encoder (MAEVRWKV6) and a decoder of 8 VRWKV6 blocks of
# width 512 (8 heads of 64). There is no official VRWKV6 MAE.
_base_ = './mae_vrwkv_b_p16_8xb512-amp-coslr-800e_in1k.py'

model = dict(backbone=dict(type='MAEVRWKV6'), neck=dict(block='VRWKV6'))
