"""The Bi-WKV entry point, ``mmvrwkv.ops.bi_wkv``: its backends, input
checks, the fallback of 'auto' and the rule during ONNX export."""
import warnings

import pytest
import torch

from mmvrwkv.ops import BI_WKV_BACKENDS, bi_wkv, bi_wkv_backends
from mmvrwkv.ops.bi_wkv.library import BI_WKV
from mmvrwkv.ops.common import ext_loader
from ..helpers import assert_rel_close, make_inputs, naive_bi_wkv, needs_ext


@pytest.mark.parametrize('make, error, match', [
    (lambda w, u, k, v: (w, u, k[0], v[0]), ValueError, r'\(B, T, C\)'),
    (lambda w, u, k, v: (w, u, k, v[:, :3]), ValueError, 'must match'),
    (lambda w, u, k, v: (w[:3], u, k, v), ValueError, r'w must have shape'),
    (lambda w, u, k, v: (w, u[None], k, v), ValueError, r'u must have shape'),
    (lambda w, u, k, v: (w, u, k.long(), v), TypeError, 'floating-point'),
    (lambda w, u, k, v: (w, u, k, v.double()), TypeError, 'same dtype'),
    (lambda w, u, k, v: (w, u, k[:, :0], v[:, :0]), ValueError, 'empty'),
    (lambda w, u, k, v: (w, u, k.to('meta'), v), ValueError, 'one device'),
    (lambda w, u, k, v: (w.numpy(), u, k, v), TypeError, 'torch.Tensor'),
], ids=['rank', 'shape', 'w-size', 'u-rank', 'int', 'mixed-dtype', 'empty',
        'device', 'numpy'])
def test_bad_input_is_rejected(make, error, match):
    args = make(*make_inputs(2, 6, 4))
    with pytest.raises(error, match=match):
        bi_wkv(*args)


def test_unknown_backend():
    with pytest.raises(ValueError, match='not one of: auto, compiled'):
        bi_wkv(*make_inputs(1, 3, 2), backend='triton')


@pytest.mark.parametrize('backend', ['compiled', 'chunked', 'reference'])
def test_every_backend_computes_bi_wkv(backend):
    if backend not in bi_wkv_backends('cpu'):
        pytest.skip(f'{backend} is not available here')
    inputs = make_inputs(2, 45, 9, requires_grad=True)
    y = bi_wkv(*inputs, backend=backend)
    assert y.dtype == torch.float32 and y.shape == (2, 45, 9)
    assert_rel_close(y, naive_bi_wkv(*inputs), 2e-5)
    gy = torch.randn_like(y)
    got = torch.autograd.grad(y, inputs, gy)
    ref_in = [x.detach().double().requires_grad_() for x in inputs]
    want = torch.autograd.grad(bi_wkv(*ref_in, backend='reference'), ref_in,
                               gy.double())
    for name, a, b in zip('wukv', got, want):
        assert_rel_close(a, b, 5e-4, name=f'{backend} grad {name}')


@needs_ext
def test_auto_is_the_compiled_kernel():
    inputs = make_inputs(2, 30, 7)
    assert torch.equal(bi_wkv(*inputs),
                       bi_wkv(*inputs, backend='compiled'))
    assert bi_wkv_backends('cpu') == ('compiled', 'chunked', 'reference')


def test_fallback_warns_once_and_runs_chunked(monkeypatch):
    monkeypatch.setattr(ext_loader, '_error', 'simulated missing build')
    monkeypatch.setattr(BI_WKV, 'registered', False)
    monkeypatch.setattr(BI_WKV_BACKENDS, 'warned', False)
    w, u, k, v = make_inputs(1, 9, 4)
    with pytest.warns(RuntimeWarning,
                      match="simulated missing build.*'chunked'"):
        y = bi_wkv(w, u, k, v)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        bi_wkv(w, u, k, v)  # no second warning
    assert torch.equal(y, bi_wkv(w, u, k, v, backend='chunked'))
    assert_rel_close(y, naive_bi_wkv(w, u, k, v), 1e-5)
    with pytest.raises(RuntimeError, match='simulated missing build'):
        bi_wkv(w, u, k, v, backend='compiled')
    assert bi_wkv_backends('cpu') == ('chunked', 'reference')


def test_unsupported_device_names_the_cause(monkeypatch):
    monkeypatch.setattr(BI_WKV, 'has_cuda', False)
    assert 'without CUDA kernels' in BI_WKV.unsupported(
        torch.device('cuda'))
    assert 'device type' in BI_WKV.unsupported(torch.device('mps'))


class _Mix(torch.nn.Module):

    def __init__(self, backend):
        super().__init__()
        self.backend = backend

    def forward(self, w, u, k, v):
        return bi_wkv(w, u, k, v, backend=self.backend)


@pytest.mark.parametrize('backend', ['chunked', 'reference', 'compiled'])
def test_onnx_export_rule(backend, tmp_path):
    """Standard-operator backends export (``test_library.py`` runs 'auto'
    in onnxruntime); a compiled kernel cannot be translated, and the export
    fails with an error naming the fix."""
    import onnx
    inputs = tuple(make_inputs(1, 6, 3))
    path = str(tmp_path / 'bi_wkv.onnx')
    if backend == 'compiled':
        with pytest.raises(Exception, match="wkv_backend='chunked'"):
            torch.onnx.export(_Mix(backend), inputs, path, dynamo=True)
        return
    torch.onnx.export(_Mix(backend), inputs, path, dynamo=True,
                      external_data=False)
    assert {n.domain for n in onnx.load(path).graph.node} <= {''}
