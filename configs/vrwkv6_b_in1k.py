# VRWKV6-B on ImageNet-1K (16 GPUs x 64). The official recipe,
# classification/configs/vrwkv6/vrwkv6_base_*_in1k.py, is VRWKV-B's
# with the backbone swapped (the VRWKV6 arch preset holds the rest), so
# this config is vrwkv_b_in1k.py's.
# Official model: 104.9M parameters, 82.6% top-1.
#   mim train mmpretrain configs/vrwkv6_b_in1k.py --gpus 16 \
#       --launcher pytorch
_base_ = './vrwkv_b_in1k.py'

model = dict(backbone=dict(type='VRWKV6'))
