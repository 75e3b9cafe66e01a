"""Every config loads and builds its model."""
import glob
import os

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, 'configs', '**', '*.py'),
                           recursive=True))
# Published parameter counts of the classifiers (official README), in M.
PUBLISHED_PARAMS = {'vrwkv_t_in1k': 6.2, 'vrwkv_s_in1k': 23.8,
                    'vrwkv_b_in1k': 93.7, 'vrwkv_l_in1k_384': 334.9}
# Backbone (VRWKV + adapter) parameters of the detection and segmentation
# models, paper Tables 3 and 4, in M.
PUBLISHED_BACKBONE_PARAMS = {'t': 8.4, 's': 29.3, 'b': 106.6, 'l': 351.9}
DENSE = ('mask_rcnn_vrwkv_', 'upernet_vrwkv_')


def build(cfg):
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    from mmengine.registry import MODELS
    scope = cfg.get('default_scope')
    if scope:
        import importlib
        MODELS = importlib.import_module(f'{scope}.registry').MODELS
    return MODELS.build(cfg.model)


def test_configs_exist():
    names = {os.path.basename(c)[:-3] for c in CONFIGS}
    assert set(PUBLISHED_PARAMS) <= names
    assert {p + s for p in DENSE for s in 'tsbl'} <= names


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_config_builds(path):
    cfg = Config.fromfile(path)
    model = build(cfg)
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
