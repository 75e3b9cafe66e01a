"""ONNX export (mmvrwkv.apis.export, tools/export_onnx.py): VRWKV and
VRWKV6 backbones, classifier and UperNet through plain
``torch.onnx.export(dynamo=True)`` (Bi-WKV and Bi-WKV6 as their chunked
standard-operator forms), checked in onnxruntime against PyTorch."""
import os
import subprocess
import sys

import onnx
import pytest
import torch

from mmvrwkv.apis.export import (ExportError, build_export_model,
                                 compare_with_onnxruntime, export_onnx)
from mmvrwkv.ops import bi_wkv_backends

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
pytestmark = pytest.mark.skipif('compiled' not in bi_wkv_backends('cpu'),
                                reason='extension not built')

CLS_CONFIG = os.path.join(ROOT, 'configs', 'vrwkv_t_in1k.py')
SEG_CONFIG = os.path.join(ROOT, 'configs', 'upernet_vrwkv_t.py')
DET_CONFIG = os.path.join(ROOT, 'configs', 'mask_rcnn_vrwkv_t.py')
CLS6_CONFIG = os.path.join(ROOT, 'configs', 'vrwkv6_t_in1k.py')
SEG6_CONFIG = os.path.join(ROOT, 'configs', 'upernet_vrwkv6_t.py')
RTOL = 1e-4


def export_and_check(config, shape, tmp_path, backbone_only=False,
                     checkpoint=None):
    module = build_export_model(config, checkpoint, backbone_only)
    x = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(0))
    out = str(tmp_path / 'model.onnx')
    names = export_onnx(module, x, out)
    graph = onnx.load(out)
    # standard operators only: no mmvrwkv (or other custom) domain
    assert {n.domain for n in graph.graph.node} <= {''}
    assert [o.name for o in graph.graph.output] == names
    result = compare_with_onnxruntime(out, module, x)
    assert result['max_rel'] <= RTOL, result
    return result


@pytest.mark.parametrize('size', [224, 512])
def test_backbone(size, tmp_path):
    result = export_and_check(CLS_CONFIG, (size, size), tmp_path,
                              backbone_only=True)
    (feat, ) = result['outputs']
    assert feat['name'] == 'feat0'
    assert feat['shape'] == [1, 192, size // 16, size // 16]


@pytest.mark.parametrize('shape', [(224, 224), (512, 384)],
                         ids=['224', '512x384'])
def test_vrwkv6_backbone(shape, tmp_path):
    """VRWKV6-T: Bi-WKV6 through its chunked form, Q-Shift per head from
    slices and padding (no ScatterND)."""
    result = export_and_check(CLS6_CONFIG, shape, tmp_path,
                              backbone_only=True)
    (feat, ) = result['outputs']
    assert feat['name'] == 'feat0'
    assert feat['shape'] == [1, 192, shape[0] // 16, shape[1] // 16]
    graph = onnx.load(str(tmp_path / 'model.onnx'), load_external_data=False)
    assert 'ScatterND' not in {n.op_type for n in graph.graph.node}


@pytest.mark.slow
def test_upernet_with_adapter(tmp_path):
    """UperNet + VRWKVAdapter (deformable attention, SyncBN as BN), small
    and not square: 192 x 160 (the PPM pools a 6x5 map to 1, 2, 3, 6)."""
    result = export_and_check(SEG_CONFIG, (192, 160), tmp_path)
    (logits, ) = result['outputs']
    assert logits['name'] == 'seg_logits'
    assert logits['shape'] == [1, 150, 48, 40]


TINY_CLS = """_base_ = '{root}/configs/vrwkv_t_in1k.py'
model = dict(backbone=dict(arch=dict(_delete_=True, embed_dims=32,
                                     num_layers=2)),
             head=dict(in_channels=32, num_classes=5))
"""


def run_cli(*args):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, 'tools', 'export_onnx.py'),
         *args], cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_cli(tmp_path):
    """The command line on a small classifier config with a checkpoint:
    status 0 within the tolerance, 1 beyond it (--rtol 0), an error message
    and status 1 for a config that does not exist."""
    cfg = tmp_path / 'tiny_cls.py'
    cfg.write_text(TINY_CLS.format(root=ROOT))
    module = build_export_model(str(cfg))
    ckpt = tmp_path / 'cls.pth'
    torch.save(dict(state_dict=module.model.state_dict()), ckpt)
    out = tmp_path / 'cls.onnx'
    proc = run_cli(str(cfg), str(ckpt), '--out', str(out), '--shape', '64',
                   '48')
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'logits (1, 5)' in proc.stdout
    assert 'OK, tolerance 0.0001' in proc.stdout
    assert out.is_file()
    proc = run_cli(str(cfg), '--out', str(out), '--shape', '32', '32',
                   '--rtol', '0')
    assert proc.returncode == 1 and 'FAIL, tolerance 0' in proc.stdout
    proc = run_cli(str(tmp_path / 'missing.py'))
    assert proc.returncode == 1
    assert 'missing.py does not exist' in proc.stderr


@pytest.mark.parametrize('arch', ['VRWKV', 'VRWKV6'])
def test_plain_torch_onnx_export_of_chunked_backbones(arch, tmp_path):
    """VRWKV-T and VRWKV6-T built with wkv_backend='chunked' (no compiled
    kernel) export with plain ``torch.onnx.export(model, (x, ), f,
    dynamo=True)``, and onnxruntime gives PyTorch's output; built on the
    compiled kernel ('compiled'), the export fails naming that fix."""
    import onnxruntime as ort

    from mmvrwkv.models import VRWKV, VRWKV6
    kind = dict(VRWKV=VRWKV, VRWKV6=VRWKV6)[arch]
    torch.manual_seed(0)
    model = kind(arch='tiny', wkv_backend='chunked').eval()
    x = torch.randn(1, 3, 96, 80)
    path = str(tmp_path / 'backbone.onnx')
    torch.onnx.export(model, (x, ), path, dynamo=True, external_data=False)
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    (got, ) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        want = model(x)[0]
        compiled = kind(arch='tiny', wkv_backend='compiled').eval()
        compiled.load_state_dict(model.state_dict())
        assert (compiled(x)[0] - want).abs().max() <= 1e-5 * want.abs().max()
    diff = (torch.from_numpy(got) - want).abs().max() / want.abs().max()
    assert diff <= 1e-5
    with pytest.raises(Exception, match="wkv_backend='chunked'"):
        torch.onnx.export(compiled, (x, ), path, dynamo=True)


@pytest.mark.slow
def test_upernet_vrwkv6_with_adapter(tmp_path):
    """UperNet + VRWKV6Adapter at 192 x 160, as the VRWKV one above."""
    result = export_and_check(SEG6_CONFIG, (192, 160), tmp_path)
    (logits, ) = result['outputs']
    assert logits['shape'] == [1, 150, 48, 40]


# ---- pieces and errors (no export) ------------------------------------------
def test_checkpoint_is_loaded(tmp_path):
    torch.manual_seed(1)
    source = build_export_model(CLS_CONFIG).model
    ckpt = tmp_path / 'cls.pth'
    torch.save(dict(meta=dict(epoch=3), state_dict=source.state_dict()),
               ckpt)
    torch.manual_seed(2)
    loaded = build_export_model(CLS_CONFIG, str(ckpt)).model
    for (name, a), b in zip(source.state_dict().items(),
                            loaded.state_dict().values()):
        assert torch.equal(a, b), name
    # --backbone-only takes the backbone. part of a full-model checkpoint
    backbone = build_export_model(CLS_CONFIG, str(ckpt),
                                  backbone_only=True).model
    assert torch.equal(backbone.pos_embed, source.backbone.pos_embed)
    assert not loaded.training and not backbone.training


def test_checkpoint_that_does_not_match(tmp_path):
    module = build_export_model(CLS_CONFIG)
    state = module.model.state_dict()
    state['head.fc.weight'] = state['head.fc.weight'][:10]
    del state['backbone.ln1.weight']
    ckpt = tmp_path / 'other.pth'
    torch.save(state, ckpt)
    with pytest.raises(ExportError,
                       match=r'does not match .*backbone\.ln1\.weight.*'
                       r'head\.fc\.weight: \(10, 192\) in the file'):
        build_export_model(CLS_CONFIG, str(ckpt))


def test_bad_inputs_are_named(tmp_path):
    garbage = tmp_path / 'garbage.pth'
    garbage.write_bytes(b'not a checkpoint')
    cases = [
        ((str(tmp_path / 'missing.py'), ), FileNotFoundError,
         'config .*missing.py does not exist'),
        ((CLS_CONFIG, str(tmp_path / 'missing.pth')), FileNotFoundError,
         'checkpoint .*missing.pth does not exist'),
        ((CLS_CONFIG, str(garbage)), ExportError,
         'not a readable PyTorch checkpoint'),
        ((DET_CONFIG, ), ExportError,
         'detector config: only its backbone exports'),
    ]
    for args, error, message in cases:
        with pytest.raises(error, match=message):
            build_export_model(*args)
