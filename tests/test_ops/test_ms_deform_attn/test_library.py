"""Multi-scale deformable sampling as a PyTorch operator: opcheck of
``torch.ops.mmvrwkv.ms_deform_attn`` (mmcv's CUDA kernel; GPU only), its
fake implementation, torch.compile of the adapter's attention without graph
breaks, and ONNX export of the reference in onnxruntime."""
import onnx
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from mmvrwkv.ops import ms_deform_attn, ms_deform_attn_backends
from ..helpers import (MSDA_SHAPES, assert_rel_close, check_compile_fullgraph,
                       msda_inputs, naive_ms_deform_attn)

FLAT = [n for shape in MSDA_SHAPES for n in shape]


@pytest.mark.gpu
@pytest.mark.skipif(not (torch.cuda.is_available() and 'compiled' in
                         ms_deform_attn_backends('cuda')),
                    reason="needs a GPU and mmcv's CUDA ops")
def test_opcheck_cuda():
    value, loc, weights = (x.requires_grad_() for x in msda_inputs(
        device='cuda'))
    torch.library.opcheck(torch.ops.mmvrwkv.ms_deform_attn.default,
                          (value, FLAT, loc, weights))


def test_fake_implementation_shapes():
    """The operator's fake implementation gives (B, Q, heads * D) without
    running anything (what torch.compile and torch.export trace)."""
    with FakeTensorMode():
        value = torch.empty(2, 31, 3, 4, device='cuda')
        loc = torch.empty(2, 5, 3, 3, 2, 2, device='cuda')
        weights = torch.empty(2, 5, 3, 3, 2, device='cuda')
        y = torch.ops.mmvrwkv.ms_deform_attn(value, FLAT, loc, weights)
        grads = torch.ops.mmvrwkv.ms_deform_attn_backward(
            value, FLAT, loc, weights, torch.empty(2, 5, 12, device='cuda'))
    assert y.shape == (2, 5, 12)
    assert [g.shape for g in grads] == [value.shape, loc.shape,
                                        weights.shape]


@pytest.mark.parametrize('backend', ['aot_eager', 'inductor'])
def test_compile_fullgraph_forward_backward(backend):

    def loss(value, loc, weights):
        y = ms_deform_attn(value, MSDA_SHAPES, loc, weights)
        return (y * torch.linspace(-1, 1, y.shape[-1])).sum()

    inputs = [x.requires_grad_() for x in msda_inputs()]
    check_compile_fullgraph(loss, inputs,
                            ('value', 'locations', 'weights'), backend)


def test_onnx_export_in_onnxruntime(tmp_path):
    import onnxruntime as ort

    class Sample(torch.nn.Module):

        def forward(self, value, loc, weights):
            return ms_deform_attn(value, MSDA_SHAPES, loc, weights)

    args = tuple(msda_inputs())
    path = str(tmp_path / 'msda.onnx')
    torch.onnx.export(Sample(), args, path, dynamo=True,
                      input_names=['value', 'loc', 'weights'],
                      external_data=False)
    graph = onnx.load(path).graph
    assert {n.domain for n in graph.node} <= {''}
    assert 'GridSample' in {n.op_type for n in graph.node}
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    y = session.run(None, {n: x.numpy() for n, x in zip(
        ('value', 'loc', 'weights'), args)})[0]
    assert_rel_close(torch.from_numpy(y),
                     naive_ms_deform_attn(*args[:1], MSDA_SHAPES, *args[1:]),
                     1e-5)
