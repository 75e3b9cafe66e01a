# UperNet, VRWKV-Adapter-B, ADE20K 512x512, 160k iterations (official
# upernet_vrwkv_adapter_base_512_160k_ade20k.py settings).
_base_ = './upernet_vrwkv_t.py'

pretrained = 'https://huggingface.co/OpenGVLab/Vision-RWKV/resolve/main/vrwkv_b_in1k_224.pth'  # noqa: E501

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.3,
        init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=[768, 768, 768, 768]),
    auxiliary_head=dict(in_channels=768))

optim_wrapper = dict(
    optimizer=dict(lr=6e-5),
    paramwise_cfg=dict(layer_decay_rate=0.80))
