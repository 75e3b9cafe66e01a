# Mask R-CNN + FPN, VRWKV-Adapter-B, COCO 1x (official
# mask_rcnn_vrwkv_adapter_base_fpn_1x_coco.py settings).
_base_ = './mask_rcnn_vrwkv_t.py'

pretrained = 'https://huggingface.co/OpenGVLab/Vision-RWKV/resolve/main/vrwkv_b_in1k_224.pth'  # noqa: E501

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.3,
        init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[768, 768, 768, 768]))

optim_wrapper = dict(optimizer=dict(lr=1e-4, weight_decay=0.05))
