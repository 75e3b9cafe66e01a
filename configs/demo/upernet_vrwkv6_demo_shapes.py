# The VRWKV6 counterpart of upernet_vrwkv_demo_shapes.py (same data,
# schedule, heads and adapter layout): a VRWKV6-Adapter UperNet trained from
# scratch on the synthetic shapes dataset. VRWKV6 works in heads of 64
# channels, so the backbone is 4 layers of 128 channels (2 heads) instead of
# 96, with 4 deformable-attention heads (32 channels each, as there).
#   make demo MODEL=vrwkv6
_base_ = './upernet_vrwkv_demo_shapes.py'

width = 128
model = dict(
    backbone=dict(
        type='VRWKV6Adapter',
        arch=dict(embed_dims=width, num_layers=4),
        deform_num_heads=4),
    decode_head=dict(in_channels=[width] * 4),
    auxiliary_head=dict(in_channels=width))
