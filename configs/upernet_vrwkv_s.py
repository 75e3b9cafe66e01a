# UperNet, VRWKV-Adapter-S, ADE20K 512x512, 160k iterations (official
# upernet_vrwkv_adapter_small_512_160k_ade20k.py settings).
_base_ = './upernet_vrwkv_t.py'

pretrained = 'https://huggingface.co/OpenGVLab/Vision-RWKV/resolve/main/vrwkv_s_in1k_224.pth'  # noqa: E501

model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.2,
        init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=[384, 384, 384, 384]),
    auxiliary_head=dict(in_channels=384))

optim_wrapper = dict(
    optimizer=dict(lr=6e-5),
    paramwise_cfg=dict(layer_decay_rate=0.85))
