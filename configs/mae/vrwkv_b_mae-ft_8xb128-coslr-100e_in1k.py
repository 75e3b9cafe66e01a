# Fine-tuning VRWKV-B on ImageNet-1K from its MAE pre-training
# (mae_vrwkv_b_p16_8xb512-amp-coslr-800e_in1k.py): mmpretrain's MAE
# fine-tuning recipe (mae/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py:
# 100 epochs, AdamW lr 2e-3 at batch 1024, layer-wise lr decay 0.65, 5
# warm-up epochs, RandAugment, random erasing, Mixup/CutMix, label
# smoothing, drop path 0.1) with the VRWKV-B backbone, which loads the
# encoder of the MAE checkpoint. checkpoint: the pre-training run's last
# checkpoint under mim's default work_dir; point it elsewhere with
# --cfg-options model.backbone.init_cfg.checkpoint=PATH.
#   mim train mmpretrain configs/mae/vrwkv_b_mae-ft_8xb128-coslr-100e_in1k.py \
#       --gpus 8 --launcher pytorch
_base_ = [
    'mmpretrain::mae/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py',
    '../_base_/vrwkv_runtime.py',
]

model = dict(
    backbone=dict(
        _delete_=True,
        type='VRWKV',
        arch='base',
        img_size=224,
        patch_size=16,
        drop_path_rate=0.1,
        out_type='avg_featmap',
        init_cfg=dict(
            type='Pretrained',
            checkpoint='work_dirs/mae_vrwkv_b_p16_8xb512-amp-coslr-800e_in1k/'
            'epoch_800.pth',
            prefix='backbone.')),
    head=dict(in_channels=768))
# mmpretrain's MAE fine-tuning decays no norm, bias or position embedding;
# the VRWKV norms are ln0/ln1/ln2 (and key_norm), caught by '.ln' and
# 'norm'
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    'norm': dict(decay_mult=0.0)}))
default_hooks = dict(checkpoint=dict(backend_args=dict(
    backend='atomic_local')))
