# UperNet with a VRWKV6-Adapter-T backbone, ADE20K 512x512, 160k
# iterations. No official VRWKV6 segmentor exists: this is the recipe of
# upernet_vrwkv_t.py (same width, schedule and optimizer) with the
# backbone swapped for VRWKV6 and the ImageNet VRWKV6-T weights.
#   mim train mmsegmentation configs/upernet_vrwkv6_t.py --gpus 8 \
#       --launcher pytorch
_base_ = './upernet_vrwkv_t.py'

pretrained = 'https://huggingface.co/OpenGVLab/Vision-RWKV/resolve/main/vrwkv6_t_in1k_224.pth'  # noqa: E501

model = dict(
    backbone=dict(
        type='VRWKV6Adapter', init_cfg=dict(checkpoint=pretrained)))
