# MAE pre-training of VRWKV6-T on ImageNet-1K: the recipe of
# mae_vrwkv6_b_p16_8xb512-amp-coslr-800e_in1k.py with the VRWKV6-T encoder.
_base_ = './mae_vrwkv6_b_p16_8xb512-amp-coslr-800e_in1k.py'

model = dict(backbone=dict(arch='tiny'), neck=dict(embed_dim=192))
