"""Bi-WKV as a PyTorch operator: torch.library registration (opcheck),
torch.compile without graph breaks, torch.export, and ONNX export of the
operator's standard-operator form in onnxruntime."""
import onnx
import pytest
import torch

from mmvrwkv.ops import bi_wkv
from ..helpers import (BI_WKV_EXTREMES, CUDA_DEVICE, assert_rel_close,
                       check_compile_fullgraph, extreme_inputs, make_inputs,
                       naive_bi_wkv, needs_ext)

DEVICES = ['cpu', CUDA_DEVICE]
pytestmark = needs_ext

SHAPES = [(1, 1, 1), (2, 7, 5), (3, 37, 19), (1, 70, 33)]
ids = ['B{}-T{}-C{}'.format(*s) for s in SHAPES]
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
DTYPE_IDS = ['fp32', 'fp64', 'bf16', 'fp16']


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize('shape', SHAPES, ids=ids)
def test_opcheck(shape, dtype, device):
    """All of opcheck's default tests: schema, autograd registration, fake
    tensor, AOT dispatch (static and dynamic shapes)."""
    inputs = make_inputs(*shape, dtype=dtype, device=device,
                         requires_grad=True)
    torch.library.opcheck(torch.ops.mmvrwkv.bi_wkv.default, inputs)
    gy = torch.randn(shape, device=device).to(dtype)
    torch.library.opcheck(torch.ops.mmvrwkv.bi_wkv_backward.default,
                          [x.detach() for x in inputs] + [gy])


@pytest.mark.parametrize('device', DEVICES)
def test_opcheck_non_contiguous(device):
    w, u, k, v = make_inputs(3, 21, 10, device=device, requires_grad=True)
    kt = k.detach().transpose(0, 1).contiguous().transpose(0, 1)
    torch.library.opcheck(torch.ops.mmvrwkv.bi_wkv.default,
                          [w, u, kt.requires_grad_(), v])


def _loss(w, u, k, v):
    weights = torch.linspace(-1, 1, k.shape[-1], device=k.device)
    return (bi_wkv(w, u, k, v) * weights).sum()


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('backend', ['aot_eager', 'inductor'])
def test_compile_fullgraph_forward_backward(backend, device):
    check_compile_fullgraph(
        _loss, make_inputs(2, 37, 19, device=device, requires_grad=True),
        'wukv', backend)


@pytest.mark.parametrize('device', DEVICES)
def test_export_with_dynamic_tokens(device):
    class Mix(torch.nn.Module):

        def forward(self, w, u, k, v):
            return bi_wkv(w, u, k, v)

    w, u, k, v = make_inputs(2, 37, 19, device=device)
    T = torch.export.Dim('T', min=2, max=4096)
    ep = torch.export.export(Mix(), (w, u, k, v), dynamic_shapes=(
        None, None, {1: T}, {1: T}))
    targets = {n.target for n in ep.graph.nodes if n.op == 'call_function'}
    assert torch.ops.mmvrwkv.bi_wkv.default in targets
    w, u, k, v = make_inputs(2, 101, 19, device=device)
    assert torch.equal(ep.module()(w, u, k, v), bi_wkv(w, u, k, v))


@pytest.mark.parametrize('case', ['T37'] + list(BI_WKV_EXTREMES))
def test_onnx_export_in_onnxruntime(case, tmp_path):
    """A module calling the entry point ('auto'), exported by plain
    ``torch.onnx.export(dynamo=True)``: the chunked form in standard
    operators, which onnxruntime runs to the float64 oracle's values on
    odd T and on |k| = 1e4 with w from -50 to 1e3."""
    import onnxruntime as ort

    class Mix(torch.nn.Module):

        def forward(self, w, u, k, v):
            return bi_wkv(w, u, k, v)

    if case == 'T37':
        args = tuple(make_inputs(2, 37, 5))
    else:
        spec = BI_WKV_EXTREMES[case]
        args = tuple(extreme_inputs(spec['T'], len(spec['w']),
                                    torch.float32, spec['k_scale'],
                                    spec['w']))
    path = str(tmp_path / 'op.onnx')
    torch.onnx.export(Mix(), args, path, dynamo=True,
                      input_names=list('wukv'), external_data=False)
    assert {n.domain for n in onnx.load(path).graph.node} <= {''}
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    y = session.run(None, {n: x.numpy() for n, x in zip('wukv', args)})[0]
    assert_rel_close(torch.from_numpy(y), naive_bi_wkv(*args), 1e-5)
