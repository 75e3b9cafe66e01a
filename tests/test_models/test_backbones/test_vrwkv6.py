"""The VRWKV6 backbone: presets and parameter counts of the official models,
official checkpoint names, heads, bfloat16, layer decay (the shared
contract is in test_backbone_contract.py)."""

import pytest
import torch

from mmvrwkv.models.backbones import VRWKV6
from tests.test_apis.official_state_dicts import official_vrwkv6_classifier

PRESETS = {  # embed_dims, heads, post_norm, init_values
    'tiny': (192, 3, False, None),
    'small': (384, 6, True, 1e-5),
    'base': (768, 12, True, 1e-5),
}

# Measured on the official model: OpenGVLab/Vision-RWKV 0e0e38a,
# classification/mmcls_custom/models/backbones/vrwkv6.py built on the CPU
# from classification/configs/vrwkv6/vrwkv6_{tiny,small,base}_*_in1k.py
# (its CUDA kernel import stubbed; mmpretrain's GlobalAveragePooling and
# LinearClsHead, which have the parameters of mmcls 0.x's), counting
# sum(p.numel() for p in model.parameters()).
OFFICIAL_PARAMS = {  # backbone, whole classifier (1000 classes)
    'tiny': (7_448_256, 7_641_256),
    'small': (27_292_032, 27_677_032),
    'base': (104_129_280, 104_898_280),
}
README_PARAMS_M = {'tiny': 7.6, 'small': 27.7, 'base': 104.9}


def expected_params(C, depth, layer_scale, img=224, patch=16):
    """Parameter count from the architecture, independent of the module
    code (see official_state_dicts.vrwkv6 for the tensors)."""
    att = (6 * C + C * 160 + 5 * 32 * C + C + C * 64 + 64 * C + C  # mixing
           + 5 * C * C + 2 * C)  # key/value/receptance/gate/output, ln_x
    ffn = 2 * C + 2 * C * 4 * C + C * C
    layer = att + ffn + 4 * C + (2 * C if layer_scale else 0)
    return (depth * layer + 2 * C + 3 * patch * patch * C + C +
            (img // patch)**2 * C + 2 * C)


def num_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize('arch', list(PRESETS))
def test_presets_match_the_official_models(arch):
    C, heads, post_norm, init_values = PRESETS[arch]
    model = VRWKV6(arch=arch)
    assert model.embed_dims == C and model.num_heads == heads
    assert len(model.layers) == 12
    block = model.layers[-1]
    assert block.post_norm == post_norm
    assert block.att.key_norm is None and block.ffn.key_norm is None
    assert block.att.time_faaaa.shape == (heads, 64)
    if init_values is None:
        assert not hasattr(block, 'gamma1')
    else:
        assert torch.all(block.gamma1 == init_values)
    backbone, classifier = OFFICIAL_PARAMS[arch]
    n = num_params(model)
    assert n == backbone == expected_params(C, 12, init_values is not None)
    with_head = n + C * 1000 + 1000  # LinearClsHead
    assert with_head == classifier
    assert round(with_head / 1e6, 1) == README_PARAMS_M[arch]


def build_classifier(arch):
    """The official classifier's layout with mmpretrain: ImageClassifier,
    GlobalAveragePooling, LinearClsHead (1000 classes)."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    # another test may have left mmdet or mmseg as the default scope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(dict(
            type='ImageClassifier',
            backbone=dict(type='VRWKV6', arch=arch),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=1000,
                      in_channels=PRESETS[arch][0])))


def test_classifier_param_count_with_mmpretrain_head():
    model = build_classifier('tiny')
    assert num_params(model) == OFFICIAL_PARAMS['tiny'][1]


@pytest.mark.parametrize('arch', list(PRESETS))
def test_official_checkpoint_names_load_strictly(arch):
    """Key names and shapes written down from the official code load with
    strict=True, into the backbone and into an mmpretrain classifier."""
    state = official_vrwkv6_classifier(arch).tensors(device='meta')
    with torch.device('meta'):
        model = build_classifier(arch)
    model.load_state_dict(state, strict=True, assign=True)
    assert set(model.state_dict()) == set(state)
    backbone = {k[len('backbone.'):]: v for k, v in state.items()
                if k.startswith('backbone.')}
    with torch.device('meta'):
        bare = VRWKV6(arch=arch)
    bare.load_state_dict(backbone, strict=True, assign=True)


def test_tiny_preset_forward_square_and_non_square():
    model = VRWKV6(arch='t', out_indices=(-1, ), drop_path_rate=0.1).eval()
    with torch.no_grad():
        (out, ) = model(torch.randn(1, 3, 224, 224))
        assert out.shape == (1, 192, 14, 14)
        (out, ) = model(torch.randn(1, 3, 224, 160))
        assert out.shape == (1, 192, 14, 10)
    assert torch.isfinite(out).all()


def small_cfg(**kwargs):
    cfg = dict(arch=dict(embed_dims=64, num_layers=4), img_size=64)
    cfg.update(kwargs)
    return cfg


def test_aliases_and_custom_arch():
    assert VRWKV6(arch='S').arch_settings == VRWKV6(
        arch='small').arch_settings
    model = VRWKV6(**small_cfg(arch=dict(
        embed_dims=128, num_layers=2, key_norm=True, post_norm=True,
        init_values=0.1, hidden_rate=2)))
    block = model.layers[1]
    assert model.num_heads == 2 and block.att.ln_x.num_groups == 2
    assert block.att.key_norm is not None and block.ffn.key_norm is not None
    assert block.ffn.key.out_features == 256 and block.post_norm
    out = model(torch.randn(2, 3, 64, 64))
    assert out[0].shape == (2, 128, 4, 4)


def test_gradients_reach_every_parameter():
    model = VRWKV6(**small_cfg(
        arch=dict(embed_dims=64, num_layers=2, post_norm=True,
                  init_values=0.5, key_norm=True)))
    model.train()
    model(torch.randn(2, 3, 64, 48))[0].square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize('kwargs, match', [
    (dict(arch='large'), "arch 'large' is not one of: base, small, tiny"),
    (dict(arch=dict(embed_dims=96, num_layers=2)),
     'heads of 64 channels: embed_dims must be a multiple of 64, got 96'),
    (dict(shift_pixel=0), 'shift_pixel must be >= 1'),
])
def test_bad_config_is_rejected(kwargs, match):
    """VRWKV6's own checks; the shared ones are in
    test_backbone_contract.py."""
    with pytest.raises((ValueError, TypeError), match=match):
        VRWKV6(**small_cfg(**kwargs))


def test_bfloat16_autocast():
    model = VRWKV6(**small_cfg()).eval()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        out = model(torch.randn(1, 3, 64, 64))[0]
    assert torch.isfinite(out).all()


def test_layer_decay_constructor_accepts_vrwkv6():
    from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

    class Classifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = VRWKV6(**small_cfg())
            self.head = torch.nn.Linear(64, 10)

    model = Classifier()
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type='LayerDecayOptimWrapperConstructor',
        optim_wrapper_cfg=dict(
            type='OptimWrapper',
            optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.05)),
        paramwise_cfg=dict(layer_decay_rate=0.5, num_layers=4)))
    optimizer = constructor(model).optimizer
    names = {id(p): n for n, p in model.named_parameters()}
    lr = {names[id(p)]: g['lr'] for g in optimizer.param_groups
          for p in g['params']}
    assert len(lr) == len(list(model.parameters()))
    assert lr['backbone.pos_embed'] == 0.5**5
    assert lr['backbone.layers.1.att.time_faaaa'] == 0.5**3
    assert lr['head.weight'] == 1.0
