# UperNet with a VRWKV-Adapter-T backbone, ADE20K 512x512, 160k iterations
# (Vision-RWKV, Duan et al., ICLR 2025). Settings follow the official
# upernet_vrwkv_adapter_tiny_512_160k_ade20k.py (8 GPUs x 2 images; the
# official run used fp16: add --amp).
#   mim train mmsegmentation configs/upernet_vrwkv_t.py --gpus 8 \
#       --launcher pytorch
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
    './_base_/vrwkv_runtime.py',
]
pretrained = 'https://huggingface.co/OpenGVLab/Vision-RWKV/resolve/main/vrwkv_t_in1k_224.pth'  # noqa: E501

crop_size = (512, 512)
# pad test images to a multiple of 32 for the adapter
data_preprocessor = dict(size=crop_size, test_cfg=dict(size_divisor=32))
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='VRWKVAdapter',
        arch='tiny',
        img_size=224,
        drop_path_rate=0.1,
        vrwkv_feature='per_interaction',
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        with_cp=False,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    decode_head=dict(in_channels=[192, 192, 192, 192], num_classes=150),
    auxiliary_head=dict(in_channels=192, num_classes=150),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='LayerDecayOptimWrapperConstructor',
    optimizer=dict(
        type='AdamW', lr=12e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(layer_decay_rate=0.95))
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
        end=1500),
    dict(
        type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1500,
        end=160000),
]
train_dataloader = dict(batch_size=2)
default_hooks = dict(
    checkpoint=dict(
        by_epoch=False, interval=16000, max_keep_ckpts=1,
        save_best='mIoU', backend_args=dict(backend='atomic_local')))
