# VRWKV6-S on ImageNet-1K (8 GPUs x 128). The official recipe,
# classification/configs/vrwkv6/vrwkv6_small_*_in1k.py, is VRWKV-S's
# with the backbone swapped (the VRWKV6 arch preset holds the rest), so
# this config is vrwkv_s_in1k.py's.
# Official model: 27.7M parameters, 81.1% top-1.
#   mim train mmpretrain configs/vrwkv6_s_in1k.py --gpus 8 \
#       --launcher pytorch
_base_ = './vrwkv_s_in1k.py'

model = dict(backbone=dict(type='VRWKV6'))
