# Mask R-CNN + FPN, VRWKV-Adapter-S, COCO 1x (official
# mask_rcnn_vrwkv_adapter_small_fpn_1x_coco.py settings).
_base_ = './mask_rcnn_vrwkv_t.py'

pretrained = 'https://huggingface.co/OpenGVLab/Vision-RWKV/resolve/main/vrwkv_s_in1k_224.pth'  # noqa: E501

model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.2,
        init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[384, 384, 384, 384]))

optim_wrapper = dict(optimizer=dict(lr=1e-4, weight_decay=0.05))
