# UperNet, VRWKV-Adapter-L, ADE20K 512x512, 160k iterations (official
# upernet_vrwkv_adapter_large_512_160k_ade20k.py settings).
_base_ = './upernet_vrwkv_t.py'

pretrained = 'https://huggingface.co/OpenGVLab/Vision-RWKV/resolve/main/vrwkv_l_in22k_192.pth'  # noqa: E501

model = dict(
    backbone=dict(
        arch='large',
        img_size=192,
        drop_path_rate=0.4,
        init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=[1024, 1024, 1024, 1024]),
    auxiliary_head=dict(in_channels=1024))

optim_wrapper = dict(
    optimizer=dict(lr=6e-5),
    paramwise_cfg=dict(layer_decay_rate=0.90))
