# Mask R-CNN + FPN with a VRWKV6-Adapter-T backbone, COCO 1x. No
# official VRWKV6 detector exists: this is the recipe of
# mask_rcnn_vrwkv_t.py (same width, schedule and optimizer) with the
# backbone swapped for VRWKV6 and the ImageNet VRWKV6-T weights.
#   mim train mmdet configs/mask_rcnn_vrwkv6_t.py --gpus 8 --launcher pytorch
_base_ = './mask_rcnn_vrwkv_t.py'

pretrained = 'https://huggingface.co/OpenGVLab/Vision-RWKV/resolve/main/vrwkv6_t_in1k_224.pth'  # noqa: E501

model = dict(
    backbone=dict(
        type='VRWKV6Adapter', init_cfg=dict(checkpoint=pretrained)))
