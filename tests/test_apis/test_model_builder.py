"""build_model: a config's model built in the config's scope, the one
helper the tools, the converter and the tests use."""
import os

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmvrwkv.apis import build_model, load_config
from mmvrwkv.models import VRWKV, VRWKVAdapter

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
CLS_CFG = os.path.join(ROOT, 'configs', 'vrwkv_t_in1k.py')
SEG_CFG = os.path.join(ROOT, 'configs', 'demo',
                       'upernet_vrwkv_demo_shapes.py')


def test_model_of_each_scope():
    from mmpretrain.models import ImageClassifier
    from mmseg.models import EncoderDecoder
    model = build_model(CLS_CFG)
    assert isinstance(model, ImageClassifier)
    assert DefaultScope.get_current_instance().scope_name == 'mmpretrain'
    assert isinstance(build_model(SEG_CFG), EncoderDecoder)
    assert DefaultScope.get_current_instance().scope_name == 'mmseg'


def test_options_backbone_and_meta_device():
    backbone = build_model(
        SEG_CFG, {'model.backbone.drop_path_rate': 0.3},
        backbone_only=True, device='meta')
    assert isinstance(backbone, VRWKVAdapter)
    assert backbone.drop_path_rate == 0.3
    assert all(p.device.type == 'meta' for p in backbone.parameters())


def test_init_cfg_and_data_preprocessor_removed_on_request():
    cfg = load_config(CLS_CFG, {'model.backbone.init_cfg': dict(
        type='Pretrained', checkpoint='/nowhere/x.pth')})
    kept = build_model(cfg)
    assert kept.backbone.init_cfg['checkpoint'] == '/nowhere/x.pth'
    assert kept.data_preprocessor._enable_normalize  # the config's mean/std
    bare = build_model(cfg, init_cfg=False, data_preprocessor=False)
    assert bare.backbone.init_cfg is None
    assert not bare.data_preprocessor._enable_normalize
    bare.init_weights()  # random initialisation: nothing is read
    # the config itself is unchanged
    assert cfg.model.backbone.init_cfg.checkpoint == '/nowhere/x.pth'
    assert 'data_preprocessor' in cfg and 'data_preprocessor' not in cfg.model


def test_errors_name_the_config():
    with pytest.raises(KeyError, match='has no model'):
        build_model(Config(dict(default_scope='mmpretrain')))
    with pytest.raises(KeyError, match='has no backbone'):
        build_model(Config(dict(model=dict(type='VRWKV', arch='tiny'))),
                    backbone_only=True)


def test_config_without_scope_uses_the_root_registry():
    model = build_model(Config(dict(model=dict(
        type='VRWKV', arch=dict(embed_dims=32, num_layers=2)))))
    assert isinstance(model, VRWKV)
    assert model(torch.randn(1, 3, 32, 32))[0].shape == (1, 32, 2, 2)
