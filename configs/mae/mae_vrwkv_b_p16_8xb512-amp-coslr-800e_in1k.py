# MAE pre-training of VRWKV-B on ImageNet-1K: mmpretrain's MAE recipe
# (mae_vit-base-p16_8xb512-amp-coslr-800e_in1k.py: mask ratio 0.75,
# normalised-pixel targets, AdamW lr 1.5e-4 x 4096 / 256, betas (0.9, 0.95),
# 40 warm-up epochs then cosine, 800 epochs, AMP) with the masked VRWKV-B
# encoder (MAEVRWKV) and a decoder of 8 VRWKV blocks of width 512, as the
# official VRWKV MAE's. The encoder keeps VRWKV-B's parameters, so the
# fine-tuning configs load its checkpoint (init_cfg, prefix 'backbone.').
# How this differs from the official VRWKV MAE recipe: docs/mae.md.
#   mim train mmpretrain \
#       configs/mae/mae_vrwkv_b_p16_8xb512-amp-coslr-800e_in1k.py \
#       --gpus 8 --launcher pytorch
_base_ = [
    'mmpretrain::mae/mae_vit-base-p16_8xb512-amp-coslr-800e_in1k.py',
    '../_base_/vrwkv_runtime.py',
]

# 'grid': visible tokens in raster order, Q-Shift on the image grid, Bi-WKV
# at the true distances (what fine-tuning computes); 'official': the
# official MAE encoder's shuffled sequence, 1-D shift and Bi-WKV over the
# visible tokens alone (docs/mae.md compares them); to switch, set both
# model.backbone.mask_mode and model.neck.mask_mode
mask_mode = 'grid'
model = dict(
    backbone=dict(
        _delete_=True,
        type='MAEVRWKV',
        arch='base',
        img_size=224,
        patch_size=16,
        mask_ratio=0.75,
        mask_mode=mask_mode),
    neck=dict(
        _delete_=True,
        type='VRWKVMAEDecoder',
        num_patches=196,
        patch_size=16,
        in_chans=3,
        embed_dim=768,
        decoder_embed_dim=512,
        decoder_depth=8,
        block='VRWKV',
        mask_mode=mask_mode))
# restated: a dict from a `mmpretrain::` base carries _scope_, which the
# Runner would pass to the collate function as an argument
train_dataloader = dict(
    collate_fn=dict(_delete_=True, type='default_collate'))
default_hooks = dict(checkpoint=dict(backend_args=dict(
    backend='atomic_local')))
