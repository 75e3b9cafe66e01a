# Mask R-CNN + FPN with a VRWKV-Adapter-T backbone, COCO instance
# segmentation, 1x schedule (Vision-RWKV, Duan et al., ICLR 2025).
# Settings follow the official mask_rcnn_vrwkv_adapter_tiny_fpn_1x_coco.py.
#   mim train mmdet configs/mask_rcnn_vrwkv_t.py --gpus 8 --launcher pytorch
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/vrwkv_runtime.py',
]
# ImageNet-1k VRWKV-T; override with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
# (or model.backbone.init_cfg=None to train from scratch).
pretrained = 'https://huggingface.co/OpenGVLab/Vision-RWKV/resolve/main/vrwkv_t_in1k_224.pth'  # noqa: E501

model = dict(
    backbone=dict(
        _delete_=True,
        type='VRWKVAdapter',
        arch='tiny',
        img_size=224,
        drop_path_rate=0.1,
        vrwkv_feature='final',
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        with_cp=False,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=[192, 192, 192, 192]))

# The data preprocessor pads to a multiple of 32, as the adapter needs.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='LayerDecayOptimWrapperConstructor',
    optimizer=dict(
        type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(layer_decay_rate=0.85))

# 8 GPUs x 2 images, as the paper; keep the last checkpoint and the best.
default_hooks = dict(
    checkpoint=dict(
        interval=1, max_keep_ckpts=2, save_best='coco/bbox_mAP',
        backend_args=dict(backend='atomic_local')))
auto_scale_lr = dict(enable=False, base_batch_size=16)
