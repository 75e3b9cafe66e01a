"""Official checkpoints (key names and shapes derived from the official code,
tests/test_apis/official_state_dicts.py) convert into state dicts that load
with strict=True into the models of our configs, for every preset and kind.
Weights are 'meta' tensors here: only names and shapes are checked."""
import os

import pytest
import torch
from mmengine.config import Config

from mmvrwkv.apis import build_model
from mmvrwkv.apis.official_checkpoint import (compare_shapes, convert_official,
                                              find_state_dict)
from . import official_state_dicts as official

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
SHORT = dict(tiny='t', small='s', base='b', large='l')
BUILDERS = dict(cls=official.official_classifier,
                det=official.official_mask_rcnn,
                seg=official.official_upernet)


def skeleton(cfg):
    """The model on the 'meta' device: names and shapes, no memory."""
    return build_model(cfg, device='meta')


def config_of(kind, arch):
    s = SHORT[arch]
    name = dict(cls='vrwkv_l_in1k_384.py' if s == 'l' else
                f'vrwkv_{s}_in1k.py', det=f'mask_rcnn_vrwkv_{s}.py',
                seg=f'upernet_vrwkv_{s}.py')[kind]
    return Config.fromfile(os.path.join(ROOT, 'configs', name))


@pytest.mark.parametrize('kind', ['cls', 'det', 'seg'])
@pytest.mark.parametrize('arch', ['tiny', 'small', 'base', 'large'])
def test_every_release_loads_strictly(arch, kind):
    state = BUILDERS[kind](arch).tensors(device='meta')
    ckpt = (official.internimage_checkpoint(state) if arch == 'large'
            and kind == 'cls' else official.mmcv1_checkpoint(
                state, ddp=kind == 'seg'))
    conv = convert_official(ckpt)
    assert (conv.kind, conv.arch) == (kind, arch)
    model = skeleton(config_of(kind, arch))
    assert compare_shapes(conv.state_dict, model) == []
    model.load_state_dict(conv.state_dict, strict=True, assign=True)
    if arch == 'large' and kind == 'cls':
        assert ('head.0.weight', 'head.layers.pre_logits.weight') in \
            conv.renamed
        assert ('head.2.bias', 'head.layers.head.bias') in conv.renamed
    else:
        assert conv.renamed == []


def test_unconverted_head_does_not_fit():
    """Without the rename the L classifier would not load: the test above
    depends on the converter, not on names that happen to agree."""
    state = official.official_classifier('large').tensors(device='meta')
    model = skeleton(config_of('cls', 'large'))
    problems = compare_shapes(state, model)
    assert any('head.layers.pre_logits.weight' in p for p in problems)
    assert any('head.0.weight' in p for p in problems)


def test_wrong_preset_is_reported_with_shapes():
    conv = convert_official(official.mmcv1_checkpoint(
        official.official_upernet('tiny').tensors(device='meta')))
    problems = compare_shapes(conv.state_dict,
                              skeleton(config_of('seg', 'small')))
    assert any('backbone.layers.0.att.key.weight: (192, 192) in the file, '
               '(384, 384) in the model' in p for p in problems)


def test_position_embedding_of_another_grid_is_accepted():
    # a 12x12 (192 px) embedding into a 14x14 model resizes on load
    conv = convert_official(official.mmcv1_checkpoint(
        official.official_classifier('base').tensors(device='meta')))
    cfg = config_of('cls', 'base')
    cfg.model.backbone.img_size = 192
    assert compare_shapes(conv.state_dict, skeleton(cfg)) == []


def test_meta_becomes_dataset_meta():
    state = official.official_classifier('tiny').tensors(device='meta')
    conv = convert_official(official.mmcv1_checkpoint(
        state, classes=('cat', 'dog'), palette=[(1, 2, 3), (4, 5, 6)]),
        source='x.pth')
    assert conv.meta['dataset_meta'] == dict(
        classes=['cat', 'dog'], palette=[[1, 2, 3], [4, 5, 6]])
    assert conv.meta['converted_from'] == 'x.pth'
    assert conv.container == 'state_dict'


@pytest.mark.parametrize('container', ['state_dict', 'model', None])
def test_finds_the_weights(container):
    state = {'backbone.pos_embed': torch.zeros(1, 4, 8)}
    ckpt = state if container is None else {container: state, 'epoch': 3}
    assert find_state_dict(ckpt) == (state, container)


def test_refuses_other_models():
    resnet = {'backbone.conv1.weight': torch.zeros(64, 3, 7, 7),
              'head.fc.weight': torch.zeros(10, 64)}
    with pytest.raises(ValueError, match='not a Vision-RWKV checkpoint'):
        convert_official(resnet)
    with pytest.raises(ValueError, match='no weights found'):
        convert_official({'epoch': 3, 'config': 'x'})


def test_sends_vrwkv6_checkpoints_to_loading_as_they_are():
    """The official VRWKV6 names are this package's (test_vrwkv6.py
    loads them strictly); converting one says so instead of 'not a
    Vision-RWKV checkpoint'."""
    state = official.official_vrwkv6_classifier('tiny').tensors(
        device='meta')
    with pytest.raises(ValueError, match='VRWKV6 checkpoint: .* needs no '
                       'conversion'):
        convert_official(official.mmcv1_checkpoint(state))


def test_refuses_a_contradicting_kind_and_bare_backbones():
    state = official.official_upernet('tiny').tensors(device='meta')
    with pytest.raises(ValueError, match='those of a seg model; use --kind'):
        convert_official(state, kind='det')
    bare = {k[len('backbone.'):]: v for k, v in state.items()
            if k.startswith('backbone.')}
    with pytest.raises(ValueError, match="init_cfg=dict\\(type='Pretrained'"):
        convert_official(bare)
    with pytest.raises(ValueError, match="kind 'panoptic' is not one of"):
        convert_official(state, kind='panoptic')
