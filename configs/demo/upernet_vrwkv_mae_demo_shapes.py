# The demo UperNet (upernet_vrwkv_demo_shapes.py) with a short budget (200
# iterations, half of the demo's: from scratch it reaches mIoU ~70 there,
# against ~95 after 400), starting from the MAE pre-trained
# encoder of mae_vrwkv_demo_shapes.py: the comparison of `make demo
# MODEL=mae`, which also trains it from scratch (init_cfg=None) with the
# same budget.
_base_ = './upernet_vrwkv_demo_shapes.py'

model = dict(
    backbone=dict(init_cfg=dict(
        type='Pretrained',
        checkpoint='work_dirs/demo_mae/mae_grid/epoch_40.pth',
        prefix='backbone.')))
max_iters = 200
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=10),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=10,
         end=max_iters),
]
default_hooks = dict(
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1, save_best=None))
