"""FLOPs counted as the paper does reproduce its table."""
import os

import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS
from mmengine.registry import init_default_scope

from mmvrwkv.utils.flops import count_flops

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


@pytest.mark.parametrize('name, gflops', [('vrwkv_t_in1k', 1.2),
                                          ('vrwkv_s_in1k', 4.6),
                                          ('vrwkv_b_in1k', 18.2)])
def test_classifier_flops_match_paper(name, gflops):
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', f'{name}.py'))
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model)
    flops = count_flops(model, (torch.randn(1, 3, 224, 224), ))
    assert round(flops['total'] / 1e9, 1) == gflops
    layers = len(model.backbone.layers)
    assert flops['wkv'] == 29 * 196 * model.backbone.embed_dims * layers


def test_large_384_flops_match_paper():
    """VRWKV-L at 384 (12x12 pos-embed from 192px pretraining) with the
    official 1024-3072-1000 MLP head: 189.5G in the paper."""
    init_default_scope('mmpretrain')
    model = MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type='VRWKV', arch='large', img_size=192),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='StackedLinearClsHead', num_classes=1000,
                  in_channels=1024, mid_channels=[3072],
                  act_cfg=dict(type='Tanh'))))
    flops = count_flops(model, (torch.randn(1, 3, 384, 384), ))
    assert round(flops['total'] / 1e9, 1) == 189.5
