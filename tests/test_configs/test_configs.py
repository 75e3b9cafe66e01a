"""Every config loads and builds its model."""
import glob
import os

import pytest
from mmengine.config import Config

from mmvrwkv.apis import build_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
CONFIGS = sorted(
    path for path in glob.glob(os.path.join(ROOT, 'configs', '**', '*.py'),
                               recursive=True)
    if '_base_' not in path.split(os.sep))  # runtime fragments, no model
# Published parameter counts of the classifiers (official README), in M.
PUBLISHED_PARAMS = {'vrwkv_t_in1k': 6.2, 'vrwkv_s_in1k': 23.8,
                    'vrwkv_b_in1k': 93.7, 'vrwkv_l_in1k_384': 334.9,
                    'vrwkv6_t_in1k': 7.6, 'vrwkv6_s_in1k': 27.7,
                    'vrwkv6_b_in1k': 104.9}
# Backbone (VRWKV + adapter) parameters of the detection and segmentation
# models, paper Tables 3 and 4, in M.
PUBLISHED_BACKBONE_PARAMS = {'t': 8.4, 's': 29.3, 'b': 106.6, 'l': 351.9}
DENSE = ('mask_rcnn_vrwkv_', 'upernet_vrwkv_')
# VRWKV6: no official dense models, the VRWKV recipes at sizes t, s, b;
# their backbone (VRWKV6 + adapter) parameters as the README gives them, in M
VRWKV6_BACKBONE_PARAMS = {'t': 9.9, 's': 33.1, 'b': 117.8}
VRWKV6_CONFIGS = [f'{kind}_vrwkv6_{size}' for kind in ('mask_rcnn', 'upernet')
                  for size in 'tsb'] + [f'vrwkv6_{s}_in1k' for s in 'tsb']


def test_configs_exist():
    names = {os.path.basename(c)[:-3] for c in CONFIGS}
    assert set(PUBLISHED_PARAMS) <= names
    assert {p + s for p in DENSE for s in 'tsbl'} <= names
    assert set(VRWKV6_CONFIGS) <= names


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_config_builds(path):
    cfg = Config.fromfile(path)
    model = build_model(cfg)
    name = os.path.basename(path)[:-3]
    if name in PUBLISHED_PARAMS:
        params = sum(p.numel() for p in model.parameters()) / 1e6
        # the table rounds mmcv's two-decimal figure again (93.65 -> 93.7)
        assert abs(round(params, 2) - PUBLISHED_PARAMS[name]) <= 0.05
    if name[:-1] in DENSE:  # the paper models, not the demo ones
        size = name[-1]
        params = sum(p.numel() for p in model.backbone.parameters()) / 1e6
        assert round(params, 1) == PUBLISHED_BACKBONE_PARAMS[size]
        # the layer-decay optimizer accepts the built model
        from mmengine.optim import build_optim_wrapper
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        lrs = {g['lr'] for g in wrapper.optimizer.param_groups}
        layers = model.backbone.num_layers
        assert len(lrs) == layers + 2
    if name in VRWKV6_CONFIGS:
        check_vrwkv6(cfg, model, name)


def check_vrwkv6(cfg, model, name):
    """A VRWKV6 config builds the VRWKV6 model of its size, a dense one
    starts from the ImageNet VRWKV6 weights of that size and takes the
    layer-decay optimizer; the tiny ones run a 64x64 image through the
    backbone (and neck)."""
    import torch
    backbone = model.backbone
    dense = not name.startswith('vrwkv6_')
    assert type(backbone).__name__ == ('VRWKV6Adapter' if dense else
                                       'VRWKV6')
    size = name.split('_')[-1 if dense else -2]
    assert backbone.embed_dims == dict(t=192, s=384, b=768)[size]
    if dense:
        params = sum(p.numel() for p in backbone.parameters()) / 1e6
        assert round(params, 1) == VRWKV6_BACKBONE_PARAMS[size]
        init_cfg = cfg.model.backbone.init_cfg
        assert init_cfg.checkpoint.endswith(f'/vrwkv6_{size}_in1k_224.pth')
        assert init_cfg.prefix == 'backbone.'
        from mmengine.optim import build_optim_wrapper
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        lrs = {g['lr'] for g in wrapper.optimizer.param_groups}
        assert len(lrs) == backbone.num_layers + 2
    if size == 't':
        with torch.no_grad():
            feats = model.eval().extract_feat(torch.randn(1, 3, 64, 64))
        assert len(feats) == {'mask_rcnn': 5, 'upernet': 4,
                              'vrwkv6': 1}[name.rsplit('_', 2)[0]
                                           if dense else 'vrwkv6']
        assert all(torch.isfinite(f).all() for f in feats)
