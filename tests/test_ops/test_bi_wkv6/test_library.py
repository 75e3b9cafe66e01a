"""Bi-WKV6 as a PyTorch operator: torch.library registration (opcheck),
torch.compile without graph breaks, torch.export, and ONNX export of the
operator's standard-operator form in onnxruntime."""
import onnx
import pytest
import torch

from mmvrwkv.ops import bi_wkv6, bi_wkv6_naive
from ..helpers import (BI_WKV6_CUDA_DEVICE, BI_WKV6_EXTREMES, BI_WKV6_TOL,
                       assert_rel_close, bi_wkv6_inputs,
                       check_compile_fullgraph, needs_bi_wkv6_ext)

pytestmark = needs_bi_wkv6_ext
DEVICE_PARAMS = ['cpu', BI_WKV6_CUDA_DEVICE]
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
DTYPE_IDS = ['fp32', 'fp64', 'bf16', 'fp16']


OPCHECK_SHAPES = [(1, 1, 1, 4), (2, 7, 2, 4), (1, 37, 3, 8), (1, 20, 1, 64)]
OPCHECK_IDS = ['B{}-T{}-H{}-N{}'.format(*s) for s in OPCHECK_SHAPES]


@pytest.mark.parametrize('device', DEVICE_PARAMS)
@pytest.mark.parametrize('dtype', DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize('shape', OPCHECK_SHAPES, ids=OPCHECK_IDS)
def test_opcheck(shape, dtype, device):
    """All of opcheck's default tests: schema, autograd registration, fake
    tensor, AOT dispatch (static and dynamic shapes)."""
    inputs = [x.requires_grad_() for x in bi_wkv6_inputs(
        *shape, dtype=dtype, device=device)]
    torch.library.opcheck(torch.ops.mmvrwkv.bi_wkv6.default, inputs)
    acc = inputs[4].dtype
    gy = torch.randn(inputs[0].shape, device=device, dtype=acc)
    torch.library.opcheck(torch.ops.mmvrwkv.bi_wkv6_backward.default,
                          [x.detach() for x in inputs] + [gy])


def _loss(r, k, v, w, u):
    y = bi_wkv6(r, k, v, w, u)
    return (y * torch.linspace(-1, 1, y.shape[-1], device=y.device)).sum()


@pytest.mark.parametrize('device', DEVICE_PARAMS)
@pytest.mark.parametrize('backend', ['aot_eager', 'inductor'])
def test_compile_fullgraph_forward_backward(backend, device):
    inputs = [x.requires_grad_()
              for x in bi_wkv6_inputs(2, 37, 2, 8, device=device)]
    check_compile_fullgraph(_loss, inputs, 'rkvwu', backend)


@pytest.mark.parametrize('device', DEVICE_PARAMS)
def test_export_with_dynamic_tokens(device):

    class Mix(torch.nn.Module):

        def forward(self, r, k, v, w, u):
            return bi_wkv6(r, k, v, w, u)

    inputs = bi_wkv6_inputs(2, 37, 2, 8, device=device)
    T = torch.export.Dim('T', min=2, max=4096)
    dyn = {1: T}
    ep = torch.export.export(Mix(), tuple(inputs),
                             dynamic_shapes=(dyn, dyn, dyn, dyn, None))
    targets = {n.target for n in ep.graph.nodes if n.op == 'call_function'}
    assert torch.ops.mmvrwkv.bi_wkv6.default in targets
    inputs = bi_wkv6_inputs(2, 101, 2, 8, device=device)
    assert torch.equal(ep.module()(*inputs), bi_wkv6(*inputs))


class _Mix(torch.nn.Module):

    def forward(self, r, k, v, w, u):
        return bi_wkv6(r, k, v, w, u)


@pytest.mark.parametrize('case', ['T37'] + list(BI_WKV6_EXTREMES))
def test_onnx_export_in_onnxruntime(case, tmp_path):
    """A module calling the entry point ('auto'), exported by plain
    ``torch.onnx.export(dynamo=True)``: the chunked form in standard
    operators, which onnxruntime runs to the float64 values on odd T and on
    the extreme decays and keys of the kernel tests."""
    import onnxruntime as ort
    spec = {} if case == 'T37' else BI_WKV6_EXTREMES[case]
    args = tuple(bi_wkv6_inputs(2, 37, 2, 64, **spec))
    path = str(tmp_path / 'op.onnx')
    torch.onnx.export(_Mix(), args, path, dynamo=True,
                      input_names=list('rkvwu'), external_data=False)
    assert {n.domain for n in onnx.load(path).graph.node} <= {''}
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    y = torch.from_numpy(session.run(None, {
        n: x.numpy() for n, x in zip('rkvwu', args)})[0])
    assert y.dtype == torch.float32
    want = bi_wkv6_naive(*(x.double() for x in args))
    assert_rel_close(y, want, BI_WKV6_TOL[torch.float32], case)
