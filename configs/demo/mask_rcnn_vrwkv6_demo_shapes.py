# The VRWKV6 counterpart of mask_rcnn_vrwkv_demo_shapes.py (same data,
# schedule, heads and adapter layout): a VRWKV6-Adapter Mask R-CNN on the
# synthetic shapes dataset, 4 layers of 128 channels (2 heads of 64) with 4
# deformable-attention heads. tools/run_demo.sh starts it from the
# backbone of upernet_vrwkv6_demo_shapes.py.
#   make demo MODEL=vrwkv6
_base_ = './mask_rcnn_vrwkv_demo_shapes.py'

backbone_width = 128
model = dict(
    backbone=dict(
        type='VRWKV6Adapter',
        arch=dict(embed_dims=backbone_width, num_layers=4),
        deform_num_heads=4),
    neck=dict(in_channels=[backbone_width] * 4))
