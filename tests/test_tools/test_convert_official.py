"""tools/convert_official.py (mmvrwkv.apis.official_checkpoint.convert_file)
end to end on official-format files of the demo architectures: the
converted file loads with strict=True through mmengine, and the model gives
the same outputs as one whose weights were copied from the official tensors
one by one."""
import os
import subprocess
import sys

import pytest
import torch
from mmengine.runner import load_checkpoint

from mmvrwkv.apis import build_model
from mmvrwkv.apis.official_checkpoint import convert_file
from tests.test_apis import official_state_dicts as official

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
# the converted files load through mmengine with mmvrwkv's loaders
# (.safetensors), as in the configs (CheckpointSafetyHook)
pytestmark = pytest.mark.usefixtures('safe_loading')
DET_CFG = os.path.join(ROOT, 'configs', 'demo',
                       'mask_rcnn_vrwkv_demo_shapes.py')
SEG_CFG = os.path.join(ROOT, 'configs', 'demo',
                       'upernet_vrwkv_demo_shapes.py')
# VRWKV-L's classifier head, shrunk: the only official names that differ
L_HEAD = {'head.0.weight': 'head.layers.pre_logits.weight',
          'head.0.bias': 'head.layers.pre_logits.bias',
          'head.2.weight': 'head.layers.head.weight',
          'head.2.bias': 'head.layers.head.bias'}


def build(cfg_path):
    return build_model(cfg_path, init_cfg=False).eval()


def copied_by_hand(cfg_path, official_state, renames=None):
    model = build(cfg_path)
    ours = model.state_dict()
    assert len(ours) == len(official_state)
    with torch.no_grad():
        for name, tensor in official_state.items():
            ours[(renames or {}).get(name, name)].copy_(tensor)
    return model


def small_l_classifier_cfg(tmp_path):
    path = tmp_path / 'vrwkv_l_small.py'
    path.write_text(
        f"_base_ = '{ROOT}/configs/vrwkv_l_in1k_384.py'\n"
        'model = dict(\n'
        '    backbone=dict(arch=dict(_delete_=True, embed_dims=32, '
        'num_layers=2, post_norm=True, key_norm=True, init_values=1e-5), '
        'img_size=64),\n'
        '    head=dict(num_classes=5, in_channels=32, hidden_dim=48))\n')
    return str(path)


def run_cli(*args):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, 'tools', 'convert_official.py'),
         *map(str, args)], cwd=ROOT, capture_output=True, text=True,
        timeout=600)


def test_l_classifier_head_renamed(tmp_path):
    cfg = small_l_classifier_cfg(tmp_path)
    shapes = official.Shapes()
    official.vrwkv(shapes, 'backbone.', 32, 2, 64, key_norm=True,
                   layer_scale=True, final_norm=True)
    shapes.linear('head.0', 32, 48)
    shapes.linear('head.2', 48, 5)
    state = shapes.tensors()
    src, dst = tmp_path / 'official.pth', tmp_path / 'ours.pth'
    torch.save(official.internimage_checkpoint(state), src)
    proc = run_cli(src, dst, '--config', cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'renamed head.0.* -> head.layers.pre_logits.* (2 tensors)' in \
        proc.stdout
    loaded = torch.load(dst, weights_only=True)
    assert set(loaded) == {'state_dict', 'meta'}

    model = build(cfg)
    load_checkpoint(model, str(dst), strict=True)
    reference = copied_by_hand(cfg, state, L_HEAD)
    x = torch.randn(2, 3, 80, 96)
    with torch.no_grad():
        torch.testing.assert_close(model(x, mode='tensor'),
                                   reference(x, mode='tensor'))


@pytest.mark.slow
@pytest.mark.parametrize('kind', ['det', 'seg'])
def test_dense_models_via_safetensors(kind, tmp_path):
    det_shapes, seg_shapes = official.official_demo_models()
    shapes, cfg = (det_shapes, DET_CFG) if kind == 'det' else (seg_shapes,
                                                               SEG_CFG)
    state = shapes.tensors(seed=1)
    src, dst = tmp_path / 'official.pth', tmp_path / 'ours.safetensors'
    classes = ('circle', 'square', 'triangle')
    torch.save(official.mmcv1_checkpoint(state, classes=classes, ddp=True),
               src)
    conv, _ = convert_file(str(src), str(dst), kind, cfg)
    assert conv.stripped_module == len(state)
    assert not conv.renamed and conv.meta['dataset_meta']['classes'] == \
        list(classes)

    model = build(cfg)
    ckpt = load_checkpoint(model, str(dst), strict=True)
    assert ckpt['meta']['dataset_meta']['classes'] == list(classes)
    reference = copied_by_hand(cfg, state)
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        if kind == 'seg':
            torch.testing.assert_close(model(x, mode='tensor'),
                                       reference(x, mode='tensor'))
        else:
            for a, b in zip(model.extract_feat(x),
                            reference.extract_feat(x)):
                torch.testing.assert_close(a, b)
            feats = model.extract_feat(x)
            for a, b in zip(model.rpn_head(feats),
                            reference.rpn_head(feats)):
                torch.testing.assert_close(a, b)


def test_refusals_name_the_problem(tmp_path):
    # not a VRWKV model
    src = tmp_path / 'resnet.pth'
    torch.save({'state_dict': {'backbone.conv1.weight': torch.zeros(4, 3, 3,
                                                                    3)}},
               src)
    with pytest.raises(ValueError, match='not a Vision-RWKV checkpoint'):
        convert_file(str(src), str(tmp_path / 'out.pth'))
    # the demo UperNet (96 channels) against the small preset's config
    src = tmp_path / 'upernet_demo.pth'
    _, seg_shapes = official.official_demo_models()
    torch.save(official.mmcv1_checkpoint(seg_shapes.tensors()), src)
    with pytest.raises(ValueError) as err:
        convert_file(str(src), str(tmp_path / 'out.pth'), config=os.path.join(
            ROOT, 'configs', 'upernet_vrwkv_s.py'))
    message = str(err.value)
    assert 'does not fit the model of' in message
    assert 'backbone.layers.0.att.key.weight: (96, 96) in the file, ' \
        '(384, 384) in the model' in message
    assert not (tmp_path / 'out.pth').exists()
    # no preset, no config: the command line's message and status
    proc = run_cli(src, tmp_path / 'out.pth')
    assert proc.returncode == 1 and 'pass the --config' in proc.stderr
    with pytest.raises(ValueError, match='refusing to overwrite'):
        convert_file(str(src), str(src))
