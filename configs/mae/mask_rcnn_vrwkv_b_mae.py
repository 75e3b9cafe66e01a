# Mask R-CNN + FPN with a VRWKV-Adapter-B backbone on COCO (1x), starting
# from the MAE pre-trained VRWKV-B encoder
# (mae_vrwkv_b_p16_8xb512-amp-coslr-800e_in1k.py) instead of the supervised
# ImageNet weights: mask_rcnn_vrwkv_b.py with another init_cfg checkpoint
# (the adapter's own layers and the final norm's absence are the same).
#   mim train mmdet configs/mae/mask_rcnn_vrwkv_b_mae.py --gpus 8 \
#       --launcher pytorch
_base_ = '../mask_rcnn_vrwkv_b.py'

model = dict(
    backbone=dict(init_cfg=dict(
        checkpoint='work_dirs/mae_vrwkv_b_p16_8xb512-amp-coslr-800e_in1k/'
        'epoch_800.pth')))
