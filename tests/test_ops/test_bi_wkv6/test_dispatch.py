"""The Bi-WKV6 entry point, ``mmvrwkv.ops.bi_wkv6``: its backends, input
checks, the fallback of 'auto' and the rule during ONNX export."""
import warnings

import pytest
import torch

from mmvrwkv.ops import (BI_WKV6_BACKENDS, bi_wkv6, bi_wkv6_backends,
                         bi_wkv6_reference)
from mmvrwkv.ops.bi_wkv6.library import BI_WKV6
from mmvrwkv.ops.common import ext_loader
from ..helpers import (assert_rel_close, bi_wkv6_expected, bi_wkv6_inputs,
                       needs_bi_wkv6_ext)


@pytest.mark.parametrize('args, match', [
    (dict(r=torch.randn(5, 16)), r'r must have shape \(B, T, C\)'),
    (dict(k=torch.randn(2, 6, 16)), 'must all be'),
    (dict(u=torch.randn(3, 4)), r'u must have shape \(heads, head_size\)'),
    (dict(v=torch.randn(2, 5, 16).long()), 'floating-point'),
    (dict(r=torch.randn(2, 0, 16), k=torch.randn(2, 0, 16),
          v=torch.randn(2, 0, 16), w=torch.randn(2, 0, 16)), 'empty'),
    (dict(w=torch.randn(2, 5, 16, device='meta')), 'one device'),
], ids=['rank', 'shape', 'u-shape', 'int', 'empty', 'device'])
def test_bad_input_is_rejected(args, match):
    inputs = dict(r=torch.randn(2, 5, 16), k=torch.randn(2, 5, 16),
                  v=torch.randn(2, 5, 16), w=torch.randn(2, 5, 16),
                  u=torch.randn(2, 8))
    inputs.update(args)
    with pytest.raises((ValueError, TypeError), match=match):
        bi_wkv6(**inputs)


def test_unknown_backend():
    with pytest.raises(ValueError, match='not one of: auto, compiled, fla'):
        bi_wkv6(*bi_wkv6_inputs(1, 3, 1, 4), backend='triton')


@pytest.mark.parametrize('backend', ['compiled', 'chunked', 'reference'])
def test_every_backend_computes_bi_wkv6(backend):
    if backend not in bi_wkv6_backends('cpu'):
        pytest.skip(f'{backend} is not available here')
    inputs = [x.requires_grad_() for x in bi_wkv6_inputs(2, 45, 2, 16)]
    y = bi_wkv6(*inputs, backend=backend)
    gy = torch.randn_like(y)
    want_y, want_grads = bi_wkv6_expected(*inputs, gy)
    assert y.dtype == torch.float32
    assert_rel_close(y, want_y, 2e-5)
    for name, g, want in zip('rkvwu', torch.autograd.grad(y, inputs, gy),
                             want_grads):
        assert_rel_close(g, want, 2e-5, name=f'{backend} grad {name}')


@needs_bi_wkv6_ext
def test_auto_is_the_compiled_kernel():
    inputs = bi_wkv6_inputs(2, 14, 3, 64)
    want = torch.ops.mmvrwkv.bi_wkv6(*inputs)
    assert torch.equal(bi_wkv6(*inputs), want)
    assert torch.equal(bi_wkv6(*inputs, backend='compiled'), want)
    assert_rel_close(bi_wkv6(*inputs, backend='reference'), want, 2e-6)


@needs_bi_wkv6_ext
def test_mixed_dtypes_run_in_float32():
    """Mixed dtypes (bfloat16 r, k, v with a float32 w and u, as under
    autocast) run in float32 like the reference; each gradient comes back
    in its input's dtype."""
    r, k, v, w, u = bi_wkv6_inputs(1, 30, 2, 64, dtype=torch.bfloat16)
    w, u = w.float(), u.float()
    xs = [x.requires_grad_() for x in (r, k, v, w, u)]
    y = bi_wkv6(*xs)
    assert y.dtype == torch.float32
    y.square().sum().backward()
    for x in xs:
        assert x.grad.dtype == x.dtype
    ref = bi_wkv6_reference(*(x.detach() for x in xs))
    assert_rel_close(y, ref, 2e-5)


def test_fallback_warns_once_and_runs_chunked(monkeypatch):
    monkeypatch.setattr(ext_loader, '_error', 'simulated missing build')
    monkeypatch.setattr(BI_WKV6, 'registered', False)
    monkeypatch.setattr(BI_WKV6_BACKENDS, 'warned', False)
    inputs = bi_wkv6_inputs(1, 9, 1, 8)
    with pytest.warns(RuntimeWarning,
                      match="simulated missing build.*falling back to the "
                      "'chunked'"):
        y = bi_wkv6(*inputs)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        bi_wkv6(*inputs)  # no second warning
    assert torch.equal(y, bi_wkv6(*inputs, backend='chunked'))
    with pytest.raises(RuntimeError, match='compiled backend requested'):
        bi_wkv6(*inputs, backend='compiled')
    assert 'compiled' not in bi_wkv6_backends('cpu')


def test_fla_is_never_chosen_by_auto():
    assert BI_WKV6_BACKENDS.preferred == ('compiled', )


class _Mix(torch.nn.Module):

    def __init__(self, backend):
        super().__init__()
        self.backend = backend

    def forward(self, r, k, v, w, u):
        return bi_wkv6(r, k, v, w, u, backend=self.backend)


@pytest.mark.parametrize('backend', ['chunked', 'compiled'])
def test_onnx_export_rule(backend, tmp_path):
    """The chunked form exports (``test_library.py`` runs 'auto' in
    onnxruntime); a compiled kernel cannot be translated, and the export
    fails with an error naming the fix."""
    import onnx
    inputs = tuple(bi_wkv6_inputs(1, 6, 1, 8))
    path = str(tmp_path / 'bi_wkv6.onnx')
    if backend == 'compiled':
        with pytest.raises(Exception, match="wkv_backend='chunked'"):
            torch.onnx.export(_Mix(backend), inputs, path, dynamo=True)
        return
    torch.onnx.export(_Mix(backend), inputs, path, dynamo=True,
                      external_data=False)
    assert {n.domain for n in onnx.load(path).graph.node} <= {''}
