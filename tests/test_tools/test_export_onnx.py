"""tools/export_onnx.py: VRWKV and VRWKV6 backbones, classifier and UperNet
to ONNX (Bi-WKV and Bi-WKV6 as standard operators), checked in onnxruntime
against PyTorch."""
import os
import re
import subprocess
import sys

import onnx
import pytest
import torch

from mmvrwkv.ops import available_backends
from ..test_ops.helpers import (BI_WKV6_EXTREMES, BI_WKV6_TOL,
                                assert_rel_close, bi_wkv6_inputs)
from .tool_loader import ROOT, load_tool

pytestmark = pytest.mark.skipif('compiled' not in available_backends('cpu'),
                                reason='extension not built')

export_onnx = load_tool('export_onnx')
CLS_CONFIG = os.path.join(ROOT, 'configs', 'vrwkv_t_in1k.py')
SEG_CONFIG = os.path.join(ROOT, 'configs', 'upernet_vrwkv_t.py')
DET_CONFIG = os.path.join(ROOT, 'configs', 'mask_rcnn_vrwkv_t.py')
CLS6_CONFIG = os.path.join(ROOT, 'configs', 'vrwkv6_t_in1k.py')
SEG6_CONFIG = os.path.join(ROOT, 'configs', 'upernet_vrwkv6_t.py')
RTOL = 1e-4


def export_and_check(config, shape, tmp_path, backbone_only=False,
                     checkpoint=None):
    module = export_onnx.build_model(config, checkpoint, backbone_only)
    x = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(0))
    out = str(tmp_path / 'model.onnx')
    names = export_onnx.export_onnx(module, x, out)
    graph = onnx.load(out)
    # standard operators only: no mmvrwkv (or other custom) domain
    assert {n.domain for n in graph.graph.node} <= {''}
    assert [o.name for o in graph.graph.output] == names
    result = export_onnx.compare_with_onnxruntime(out, module, x)
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
    """VRWKV6-T: Bi-WKV6 through its decomposition, Q-Shift per head
    through its padded form (no ScatterND left)."""
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


def test_classifier_cli(tmp_path):
    """The command line on the classifier config, with a checkpoint."""
    module = export_onnx.build_model(CLS_CONFIG)
    ckpt = tmp_path / 'cls.pth'
    torch.save(dict(state_dict=module.model.state_dict()), ckpt)
    out = tmp_path / 'cls.onnx'
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep +
               os.environ.get('PYTHONPATH', ''))
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'tools', 'export_onnx.py'),
         CLS_CONFIG, str(ckpt), '--out', str(out), '--shape', '224', '192'],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'logits (1, 1000)' in proc.stdout
    assert 'OK, tolerance 0.0001' in proc.stdout
    assert out.is_file()


@pytest.mark.parametrize('case', ['T37', 'k1e4'])
def test_bi_wkv_op_in_onnxruntime(case, tmp_path):
    """The registered operator alone, through the decomposition, in
    onnxruntime: odd T, and |k| = 1e4 with w from -50 to 1e3."""
    import onnxruntime as ort

    from tests.test_ops.helpers import assert_rel_close, naive_bi_wkv
    from tests.test_ops.test_bi_wkv_extreme import W_EXTREME, inputs
    T, k_scale = (37, 1.) if case == 'T37' else (300, 1e4)
    w, u, k, v = inputs(T, len(W_EXTREME), torch.float32, k_scale,
                        W_EXTREME / (T if case == 'T37' else 1))

    class Op(torch.nn.Module):

        def forward(self, w, u, k, v):
            return torch.ops.mmvrwkv.bi_wkv(w, u, k, v)

    args = (w, u, k, v)
    ep = torch.export.export(Op(), args).run_decompositions(
        export_onnx.export_decompositions(chunk=7))
    path = str(tmp_path / 'op.onnx')
    torch.onnx.export(ep, args, dynamo=True, external_data=False,
                      input_names=list('wukv')).save(path,
                                                     external_data=False)
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    y = session.run(None, {n: x.detach().numpy()
                           for n, x in zip('wukv', args)})[0]
    assert_rel_close(torch.from_numpy(y), naive_bi_wkv(w, u, k, v), 1e-5)


@pytest.mark.slow
def test_upernet_vrwkv6_with_adapter(tmp_path):
    """UperNet + VRWKV6Adapter at 192 x 160, as the VRWKV one above."""
    result = export_and_check(SEG6_CONFIG, (192, 160), tmp_path)
    (logits, ) = result['outputs']
    assert logits['shape'] == [1, 150, 48, 40]


@pytest.mark.parametrize('case', ['T37'] + list(BI_WKV6_EXTREMES))
def test_bi_wkv6_op_in_onnxruntime(case, tmp_path):
    """The registered Bi-WKV6 operator alone, through the decomposition, in
    onnxruntime: odd T (37 tokens in chunks of 7), and the extreme decays
    and keys of the Bi-WKV6 kernel tests (tests/test_ops/helpers.py)."""
    import onnxruntime as ort

    from mmvrwkv.ops import bi_wkv6_naive
    if not hasattr(torch.ops.mmvrwkv, 'bi_wkv6'):
        pytest.skip('no mmvrwkv::bi_wkv6 operator')
    spec = {} if case == 'T37' else BI_WKV6_EXTREMES[case]
    args = tuple(bi_wkv6_inputs(2, 37, 2, 64, **spec))

    class Op(torch.nn.Module):

        def forward(self, r, k, v, w, u):
            return torch.ops.mmvrwkv.bi_wkv6(r, k, v, w, u)

    ep = torch.export.export(Op(), args).run_decompositions(
        export_onnx.export_decompositions(chunk=7))
    assert 'bi_wkv6' not in str(ep.graph)
    path = str(tmp_path / 'op.onnx')
    torch.onnx.export(ep, args, dynamo=True, external_data=False,
                      input_names=list('rkvwu')).save(path,
                                                      external_data=False)
    assert {n.domain for n in onnx.load(path).graph.node} <= {''}
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    y = torch.from_numpy(session.run(None, {
        n: x.numpy() for n, x in zip('rkvwu', args)})[0])
    assert y.dtype == torch.float32
    want = bi_wkv6_naive(*(x.double() for x in args))
    assert_rel_close(y, want, BI_WKV6_TOL[torch.float32], case)
    assert_rel_close(y, torch.ops.mmvrwkv.bi_wkv6(*args), RTOL, case)


# ---- pieces and errors (no export) ------------------------------------------
def test_checkpoint_is_loaded(tmp_path):
    torch.manual_seed(1)
    source = export_onnx.build_model(CLS_CONFIG).model
    ckpt = tmp_path / 'cls.pth'
    torch.save(dict(meta=dict(epoch=3), state_dict=source.state_dict()),
               ckpt)
    torch.manual_seed(2)
    loaded = export_onnx.build_model(CLS_CONFIG, str(ckpt)).model
    for (name, a), b in zip(source.state_dict().items(),
                            loaded.state_dict().values()):
        assert torch.equal(a, b), name
    # --backbone-only takes the backbone. part of a full-model checkpoint
    backbone = export_onnx.build_model(CLS_CONFIG, str(ckpt),
                                       backbone_only=True).model
    assert torch.equal(backbone.pos_embed, source.backbone.pos_embed)
    assert not loaded.training and not backbone.training


def test_checkpoint_that_does_not_match(tmp_path):
    module = export_onnx.build_model(CLS_CONFIG)
    state = module.model.state_dict()
    state['head.fc.weight'] = state['head.fc.weight'][:10]
    del state['backbone.ln1.weight']
    ckpt = tmp_path / 'other.pth'
    torch.save(state, ckpt)
    with pytest.raises(export_onnx.ExportError,
                       match=r'does not match .*backbone\.ln1\.weight.*'
                       r'head\.fc\.weight: \(10, 192\) in the file'):
        export_onnx.build_model(CLS_CONFIG, str(ckpt))


def test_bad_inputs_exit_with_a_message(tmp_path, capsys):
    garbage = tmp_path / 'garbage.pth'
    garbage.write_bytes(b'not a checkpoint')
    cases = [
        ([str(tmp_path / 'missing.py')], 'config .*missing.py does not exist'),
        ([CLS_CONFIG, str(tmp_path / 'missing.pth')],
         'checkpoint .*missing.pth does not exist'),
        ([CLS_CONFIG, str(garbage)], 'not a readable PyTorch checkpoint'),
        ([DET_CONFIG], 'detector config: only its backbone exports'),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exc:
            export_onnx.main(argv + ['--out', str(tmp_path / 'x.onnx')])
        assert exc.value.code != 0
        assert re.search(message, str(exc.value.code)), exc.value.code
    assert not (tmp_path / 'x.onnx').exists()


def test_exit_status_follows_the_tolerance(tmp_path, monkeypatch, capsys):
    """Status 1 when onnxruntime is further from PyTorch than --rtol (the
    export and the comparison are stubbed: only main's decision)."""
    out = tmp_path / 'm.onnx'

    def fake_export(module, x, path, chunk, opset):
        out.write_bytes(b'')
        return ['feat0']

    def fake_compare(path, module, x):
        return dict(max_abs=2e-3, max_rel=1e-3, outputs=[dict(
            name='feat0', shape=[1, 192, 14, 14], max_abs=2e-3,
            max_rel=1e-3)])

    monkeypatch.setattr(export_onnx, 'export_onnx', fake_export)
    monkeypatch.setattr(export_onnx, 'compare_with_onnxruntime',
                        fake_compare)
    argv = [CLS_CONFIG, '--backbone-only', '--out', str(out)]
    assert export_onnx.main(argv) == 1
    assert 'FAIL, tolerance 0.0001' in capsys.readouterr().out
    assert export_onnx.main(argv + ['--rtol', '2e-3']) == 0


def test_q_shift_padded_equals_q_shift():
    from mmvrwkv.models.layers.shift import q_shift
    for B, H, W, C in [(1, 14, 14, 16), (2, 7, 9, 10), (1, 1, 1, 8),
                       (1, 3, 2, 9)]:
        x = torch.randn(B, H * W, C)
        for shift in (1, 2, 5):
            for gamma in (0.25, 0.1, 0.):
                assert torch.equal(
                    export_onnx.q_shift_padded(x, shift, gamma, (H, W)),
                    q_shift(x, shift, gamma, (H, W)))


def test_q_shift_multihead_padded_equals_q_shift_multihead():
    from mmvrwkv.models.layers.shift import q_shift_multihead
    for B, H, W, heads, head_dim in [(1, 14, 14, 3, 64), (2, 7, 9, 2, 8),
                                     (1, 1, 1, 1, 4), (1, 3, 2, 2, 12)]:
        x = torch.randn(B, H * W, heads * head_dim)
        for shift in (1, 2, 5):
            for gamma in (0.25, 0.1, 0.):
                assert torch.equal(
                    export_onnx.q_shift_multihead_padded(
                        x, shift, gamma, (H, W), head_dim),
                    q_shift_multihead(x, shift, gamma, (H, W), head_dim))


def test_padded_q_shift_swaps_both_shifts_and_restores_them():
    from mmvrwkv.models.layers.shift import q_shift, q_shift_multihead
    a, b, c = (torch.nn.Module() for _ in range(3))
    a.shift_func, b.shift_func = q_shift, q_shift_multihead
    model = torch.nn.Sequential(a, b, c)
    with export_onnx.padded_q_shift(model):
        assert a.shift_func is export_onnx.q_shift_padded
        assert b.shift_func is export_onnx.q_shift_multihead_padded
        assert not hasattr(c, 'shift_func')
    assert a.shift_func is q_shift and b.shift_func is q_shift_multihead


def test_ms_deform_attn_decomposition():
    """The adapter's CUDA deformable-attention operator, if traced, is
    replaced by mmcv's PyTorch function (a CPU trace uses that directly)."""
    if not hasattr(torch.ops.mmvrwkv, 'ms_deform_attn'):
        pytest.skip('no mmvrwkv::ms_deform_attn operator')
    from mmcv.ops.multi_scale_deform_attn import \
        multi_scale_deformable_attn_pytorch
    shapes = [(4, 6), (2, 3)]

    class Sample(torch.nn.Module):

        def forward(self, value, loc, weights):
            return torch.ops.mmvrwkv.ms_deform_attn(
                value, [n for s in shapes for n in s], loc, weights)

    g = torch.Generator().manual_seed(0)
    value = torch.randn(2, 30, 3, 4, generator=g)
    loc = torch.rand(2, 5, 3, 2, 4, 2, generator=g)
    weights = torch.rand(2, 5, 3, 2, 4, generator=g)
    ep = torch.export.export(Sample(), (value, loc, weights))
    ep = ep.run_decompositions(export_onnx.export_decompositions())
    assert 'ms_deform_attn' not in str(ep.graph)
    assert torch.allclose(
        ep.module()(value, loc, weights),
        multi_scale_deformable_attn_pytorch(value, shapes, loc, weights))
