# Mask R-CNN + FPN with a VRWKV6-Adapter-S backbone, COCO 1x. No
# official VRWKV6 detector exists: this is the recipe of
# mask_rcnn_vrwkv_s.py (same width, schedule and optimizer) with the
# backbone swapped for VRWKV6 and the ImageNet VRWKV6-S weights.
#   mim train mmdet configs/mask_rcnn_vrwkv6_s.py --gpus 8 --launcher pytorch
_base_ = './mask_rcnn_vrwkv_s.py'

pretrained = 'https://huggingface.co/OpenGVLab/Vision-RWKV/resolve/main/vrwkv6_s_in1k_224.pth'  # noqa: E501

model = dict(
    backbone=dict(
        type='VRWKV6Adapter', init_cfg=dict(checkpoint=pretrained)))
