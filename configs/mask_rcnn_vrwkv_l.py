# Mask R-CNN + FPN, VRWKV-Adapter-L, COCO 1x (official
# mask_rcnn_vrwkv_adapter_large_fpn_1x_coco.py settings). The backbone was
# pre-trained on ImageNet-22k at 192 px (12x12 position embedding).
_base_ = './mask_rcnn_vrwkv_t.py'

pretrained = 'https://huggingface.co/OpenGVLab/Vision-RWKV/resolve/main/vrwkv_l_in22k_192.pth'  # noqa: E501

model = dict(
    backbone=dict(
        arch='large',
        img_size=192,
        drop_path_rate=0.4,
        init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[1024, 1024, 1024, 1024]))

optim_wrapper = dict(
    optimizer=dict(lr=1e-4, weight_decay=0.05))
