"""FLOPs counted as the paper does reproduce its table."""
import os

import pytest
import torch
from mmengine.config import Config

from mmvrwkv.apis import build_model, count_flops

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


@pytest.mark.parametrize('name, gflops', [('vrwkv_t_in1k', 1.2),
                                          ('vrwkv_s_in1k', 4.6),
                                          ('vrwkv_b_in1k', 18.2)])
def test_classifier_flops_match_paper(name, gflops):
    model = build_model(os.path.join(ROOT, 'configs', f'{name}.py'))
    flops = count_flops(model, (torch.randn(1, 3, 224, 224), ))
    assert round(flops['total'] / 1e9, 1) == gflops
    layers = len(model.backbone.layers)
    assert flops['wkv'] == 29 * 196 * model.backbone.embed_dims * layers


# VRWKV6 at 224 (official README: 1.6G / 5.6G / 20.9G). Counted with the
# official script's formula (mmcv counter + per layer
# T * C * (10*32 + 2*64 + 7*64 + 17) + T * (5*32 + 64)) the official
# models, which ours equal module for module (same parameters, same
# outputs), give 1.66G / 5.74G / 21.20G. The README's numbers are lower by
# 139-193 FLOPs per token-channel per layer for all three sizes; the
# low-rank token-shift projection counted once (5*32 = 160) instead of
# twice gives exactly the printed 1.6 / 5.6 / 20.9. We count as the script
# does, and check that relation too.
@pytest.mark.parametrize('name, gflops, readme', [
    ('vrwkv6_t_in1k', 1.66, 1.6), ('vrwkv6_s_in1k', 5.74, 5.6),
    ('vrwkv6_b_in1k', 21.20, 20.9)])
def test_vrwkv6_classifier_flops_as_official_script(name, gflops, readme):
    model = build_model(os.path.join(ROOT, 'configs', f'{name}.py'))
    flops = count_flops(model, (torch.randn(1, 3, 224, 224), ))
    assert round(flops['total'] / 1e9, 2) == gflops
    C, layers = model.backbone.embed_dims, len(model.backbone.layers)
    assert flops['wkv'] == layers * 196 * (
        C * (32 * 10 + 64 * 2 + 7 * 64 + 17) + 32 * 5 + 64)
    assert round((flops['total'] - 160 * 196 * C * layers) / 1e9, 1) \
        == readme


def test_large_384_flops_match_paper():
    """VRWKV-L at 384 (12x12 pos-embed from 192px pretraining) with the
    official 1024-3072-1000 MLP head: 189.5G in the paper."""
    model = build_model(Config(dict(
        default_scope='mmpretrain',
        model=dict(
            type='ImageClassifier',
            backbone=dict(type='VRWKV', arch='large', img_size=192),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='StackedLinearClsHead', num_classes=1000,
                      in_channels=1024, mid_channels=[3072],
                      act_cfg=dict(type='Tanh'))))))
    flops = count_flops(model, (torch.randn(1, 3, 384, 384), ))
    assert round(flops['total'] / 1e9, 1) == 189.5


def test_counting_leaves_model_as_it_was():
    model = build_model(Config(dict(
        default_scope='mmpretrain',
        model=dict(type='VRWKV', arch=dict(embed_dims=32, num_layers=2)))))
    x = torch.randn(1, 3, 64, 96)
    model.train()
    first = count_flops(model, (x, ))
    assert model.training
    assert not any('__flops__' in vars(m) for m in model.modules())
    assert count_flops(model, (x, )) == first
    assert first['wkv'] == 29 * 4 * 6 * 32 * 2


# Official README, backbone + adapter: UperNet at 512x512 16.6G (Mask R-CNN
# at 1333x800: 67.9G). The official repository ships no script for these;
# counting the way its classification script does (mmcv counter + 29*T*C
# per layer) gives 0.15-1.0% less for every size (T/S/B/L seg: 16.43 /
# 46.04 / 145.53 / 421.28 vs 16.6 / 46.3 / 146.0 / 421.9; T/S det 67.41 /
# 188.85 vs 67.9 / 189.9), and no single analytic term (deformable sampling,
# per-layer T*C) closes all the gaps, so this checks the gap (0.17G), not
# the printed digit. Slow: mmcv's deformable attention runs its PyTorch
# fallback on the CPU.
@pytest.mark.slow
def test_segmentation_backbone_flops_near_official():
    backbone = build_model(
        os.path.join(ROOT, 'configs', 'upernet_vrwkv_t.py'),
        backbone_only=True, init_cfg=False)
    flops = count_flops(backbone, (torch.randn(1, 3, 512, 512), ))
    assert 0 < 16.6 - flops['total'] / 1e9 < 0.25
    assert flops['wkv'] == 29 * 32 * 32 * 192 * 12
