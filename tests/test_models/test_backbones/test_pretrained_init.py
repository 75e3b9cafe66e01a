"""Backbones start from official ImageNet checkpoints through mmengine's
``init_cfg=dict(type='Pretrained', prefix='backbone.')``: the position
embedding is resized from the pre-training grid, the other weights are
copied, and missing/unexpected keys are logged. Loading goes through
mmvrwkv's loaders (safetensors, InternImage's 'model' nesting), as in the
configs, which turn them on with CheckpointSafetyHook."""
import logging

import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.registry import MODELS

import mmvrwkv  # noqa: F401
from mmvrwkv.models.backbones.vrwkv import resize_pos_embed
from mmvrwkv.utils import save_safetensors
from tests.test_apis import official_state_dicts as official

ARCH = dict(embed_dims=32, num_layers=2, post_norm=True, init_values=1e-5)
pytestmark = pytest.mark.usefixtures('safe_loading')


@pytest.fixture
def log_lines():
    logger = MMLogger.get_current_instance()
    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


def official_classifier_file(tmp_path, img, suffix, container='mmcv'):
    """An official mmcls 0.x classifier checkpoint of the small arch."""
    shapes = official.Shapes()
    official.vrwkv(shapes, 'backbone.', 32, 2, img, key_norm=False,
                   layer_scale=True, final_norm=True)
    shapes.linear('head.fc', 32, 10)
    state = shapes.tensors(seed=3)
    path = tmp_path / f'vrwkv_in1k_{img}{suffix}'
    if suffix == '.pth' and container == 'model':   # InternImage-style
        torch.save(dict(model=state, epoch=19), path)
    elif suffix == '.pth':
        torch.save(official.mmcv1_checkpoint(state), path)
    else:
        save_safetensors(state, str(path))
    return str(path), state


def check_copied(backbone, state, grid):
    ours = backbone.state_dict()
    for key, value in state.items():
        name = key[len('backbone.'):]
        if name == 'pos_embed':
            side = int(value.shape[1]**0.5)
            torch.testing.assert_close(
                ours[name], resize_pos_embed(value, (side, side), grid))
        elif name in ours:
            torch.testing.assert_close(ours[name], value)


@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
def test_adapter_from_192px_classifier(tmp_path, log_lines, suffix):
    path, state = official_classifier_file(tmp_path, 192, suffix)
    backbone = MODELS.build(dict(
        type='VRWKVAdapter', arch=ARCH, img_size=224, conv_inplane=8,
        deform_num_heads=2, deform_ratio=1.0,
        interaction_indexes=[[0, 0], [1, 1]],
        init_cfg=dict(type='Pretrained', checkpoint=path,
                      prefix='backbone.')))
    backbone.init_weights()
    check_copied(backbone, state, (14, 14))
    log = '\n'.join(log_lines)
    assert 'Resize pos_embed from 12x12 to 14x14' in log
    assert 'missing keys in source state_dict' in log and 'spm.' in log
    unexpected = [line for line in log_lines
                  if 'unexpected key in source state_dict' in line]
    assert unexpected and 'ln1.weight' in unexpected[0]  # adapter: no ln1


def test_plain_backbone_224_to_512(tmp_path, log_lines):
    path, state = official_classifier_file(tmp_path, 224, '.pth', 'model')
    backbone = MODELS.build(dict(
        type='VRWKV', arch=ARCH, img_size=512,
        init_cfg=dict(type='Pretrained', checkpoint=path,
                      prefix='backbone.')))
    backbone.init_weights()
    check_copied(backbone, state, (32, 32))
    assert any('Resize pos_embed from 14x14 to 32x32' in line
               for line in log_lines)
    assert not any('missing keys' in line for line in log_lines)
