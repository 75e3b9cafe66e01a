"""LayerDecayOptimWrapperConstructor: the official layer-wise lr decay."""
import pytest
import torch.nn as nn
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

from mmvrwkv.models import VRWKV, VRWKVAdapter

BASE_LR, WD, RATE = 1e-3, 0.05, 0.8


class Detector(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.neck = nn.Conv2d(32, 8, 1)


def build(model, **paramwise):
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type='LayerDecayOptimWrapperConstructor',
        optim_wrapper_cfg=dict(
            type='OptimWrapper',
            optimizer=dict(type='AdamW', lr=BASE_LR, weight_decay=WD)),
        paramwise_cfg=dict(layer_decay_rate=RATE, **paramwise)))
    return constructor(model).optimizer


def settings(optimizer, model):
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: (g['lr'], g['weight_decay'])
            for g in optimizer.param_groups for p in g['params']}


@pytest.mark.parametrize('backbone_cls', [VRWKV, VRWKVAdapter])
def test_lr_and_weight_decay_per_parameter(backbone_cls):
    kwargs = dict(arch=dict(embed_dims=32, num_layers=3), img_size=64)
    if backbone_cls is VRWKVAdapter:
        kwargs.update(conv_inplane=8, deform_num_heads=2, deform_ratio=1.0,
                      interaction_indexes=[[0, 0], [1, 1], [2, 2]])
    model = Detector(backbone_cls(**kwargs))
    got = settings(build(model, num_layers=3), model)
    assert len(got) == len(list(model.parameters()))
    L = 3
    # the official rule: scale = rate ** (L + 1 - layer_id)
    assert got['backbone.pos_embed'] == (BASE_LR * RATE**(L + 1), WD)
    assert got['backbone.patch_embed.projection.bias'] == (
        BASE_LR * RATE**(L + 1), 0.)
    for i in range(L):
        lr = BASE_LR * RATE**(L - i)
        assert got[f'backbone.layers.{i}.att.key.weight'] == (lr, WD)
        assert got[f'backbone.layers.{i}.att.spatial_decay'] == (lr, 0.)
        assert got[f'backbone.layers.{i}.ln1.weight'] == (lr, 0.)
    assert got['neck.weight'] == (BASE_LR, WD)
    assert got['neck.bias'] == (BASE_LR, 0.)
    if backbone_cls is VRWKVAdapter:
        assert got['backbone.level_embed'] == (BASE_LR, WD)
        assert got['backbone.interactions.0.injector.gamma'] == (BASE_LR, 0.)


def test_frozen_parameters_are_left_out():
    model = Detector(VRWKV(arch=dict(embed_dims=32, num_layers=2),
                           img_size=32, frozen_stages=1))
    got = settings(build(model), model)
    assert 'backbone.pos_embed' not in got
    assert not any(n.startswith('backbone.layers.0.') for n in got)


def test_errors():
    model = Detector(VRWKV(arch=dict(embed_dims=32, num_layers=2),
                           img_size=32))
    with pytest.raises(ValueError, match='num_layers=12 but the backbone '
                       'has 2'):
        build(model, num_layers=12)
    with pytest.raises(TypeError, match='get_layer_depth'):
        build(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match='layer_decay_rate'):
        OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
            type='LayerDecayOptimWrapperConstructor',
            optim_wrapper_cfg=dict(optimizer=dict(type='AdamW', lr=1.)),
            paramwise_cfg=dict(layer_decay_rate=1.5)))
    with pytest.raises(ValueError, match='custom_keys'):
        OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
            type='LayerDecayOptimWrapperConstructor',
            optim_wrapper_cfg=dict(optimizer=dict(type='AdamW', lr=1.)),
            paramwise_cfg=dict(layer_decay_rate=0.9, custom_keys={})))


def test_depth_from_any_backbone_with_get_layer_depth():
    """The depth comes from the backbone's get_layer_depth (mmpretrain's
    contract), so other backbones work too: here mmpretrain's ViT."""
    from mmpretrain.models import VisionTransformer
    vit = VisionTransformer(
        arch=dict(embed_dims=32, num_layers=3, num_heads=2,
                  feedforward_channels=64), img_size=32, patch_size=16)
    model = Detector(vit)
    got = settings(build(model), model)
    assert got['backbone.layers.0.ffn.layers.1.weight'] == (
        BASE_LR * RATE**3, WD)
    assert got['backbone.layers.2.ffn.layers.1.weight'] == (
        BASE_LR * RATE, WD)
    assert got['neck.weight'] == (BASE_LR, WD)
