# VRWKV6-T on ImageNet-1K (8 GPUs x 128). The official recipe,
# classification/configs/vrwkv6/vrwkv6_tiny_*_in1k.py, is VRWKV-T's
# with the backbone swapped (the VRWKV6 arch preset holds the rest), so
# this config is vrwkv_t_in1k.py's.
# Official model: 7.6M parameters, 76.6% top-1.
#   mim train mmpretrain configs/vrwkv6_t_in1k.py --gpus 8 \
#       --launcher pytorch
_base_ = './vrwkv_t_in1k.py'

model = dict(backbone=dict(type='VRWKV6'))
