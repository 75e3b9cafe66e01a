# UperNet with a VRWKV-Adapter-B backbone on ADE20K (512x512, 160k
# iterations), starting from the MAE pre-trained VRWKV-B encoder
# (mae_vrwkv_b_p16_8xb512-amp-coslr-800e_in1k.py): upernet_vrwkv_b.py with
# another init_cfg checkpoint.
#   mim train mmsegmentation configs/mae/upernet_vrwkv_b_mae.py --gpus 8 \
#       --launcher pytorch
_base_ = '../upernet_vrwkv_b.py'

model = dict(
    backbone=dict(init_cfg=dict(
        checkpoint='work_dirs/mae_vrwkv_b_p16_8xb512-amp-coslr-800e_in1k/'
        'epoch_800.pth')))
