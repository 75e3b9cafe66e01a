"""VRWKV models under torch.compile (fullgraph: no graph break, forward and
backward in training mode) and torch.export (any image size)."""
import pytest
import torch

from mmvrwkv.apis import build_model
from mmvrwkv.models import VRWKV, VRWKV6Adapter, VRWKVAdapter
from mmvrwkv.ops import bi_wkv_backends
from tests.test_ops.helpers import assert_rel_close

pytestmark = pytest.mark.skipif('compiled' not in bi_wkv_backends('cpu'),
                                reason='extension not built')


def _grads(model, x, out_fn):
    model.zero_grad()
    out = out_fn(model(x))
    out.backward()
    return out.detach(), {
        n.removeprefix('_orig_mod.'): p.grad.clone()
        for n, p in model.named_parameters() if p.grad is not None}


def check_compiled_training(model, x, out_fn, backend, tol):
    """Forward and backward of ``torch.compile(model, fullgraph=True)``
    equal eager's (loss and every parameter gradient)."""
    torch._dynamo.reset()
    model.train()
    torch.manual_seed(0)  # the same drop-path draws in both runs
    want, want_grads = _grads(model, x, out_fn)
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    torch.manual_seed(0)
    got, got_grads = _grads(compiled, x, out_fn)
    assert_rel_close(got, want, tol, name='loss')
    assert got_grads.keys() == want_grads.keys()
    # Gradients of biases followed by a train-mode BatchNorm are zero up to
    # rounding; measure every error against at least 1e-3 of the largest
    # gradient of the model.
    floor = 1e-3 * max(g.abs().max().item() for g in want_grads.values())
    for name, g in want_grads.items():
        assert_rel_close(got_grads[name], g, tol, name=name, floor=floor)


def weighted_sum(outs):
    # a loss that weighs every element differently, over every output
    return sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum()
               for o in outs)


@pytest.mark.parametrize('backend', ['aot_eager', 'inductor'])
def test_vrwkv_tiny_compiles_fullgraph(backend):
    model = VRWKV(arch='tiny', img_size=64, out_indices=(5, 11),
                  drop_path_rate=0.)
    check_compiled_training(model, torch.randn(2, 3, 64, 48), weighted_sum,
                            backend, 1e-4)


def test_vrwkv_adapter_tiny_compiles_fullgraph():
    model = VRWKVAdapter(arch='tiny', img_size=64, drop_path_rate=0.)
    check_compiled_training(model, torch.randn(1, 3, 64, 96), weighted_sum,
                            'aot_eager', 1e-3)


def test_vrwkv6_adapter_compiles_fullgraph():
    # two layers of two 64-channel heads: Bi-WKV6, the data-dependent
    # shift and decay, and the adapter's modules in one graph
    model = VRWKV6Adapter(
        arch=dict(embed_dims=128, num_layers=2), img_size=64,
        conv_inplane=16, deform_num_heads=4, deform_ratio=1.0,
        interaction_indexes=[[0, 0], [1, 1]])

    def squared_weighted_sum(outs):
        # The maps leave a train-mode BatchNorm, so weighted_sum cancels to
        # ~1e-6 of its terms and measures only float32 summation noise; the
        # squares do not cancel.
        return sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).square()
                   .mean() for o in outs)

    check_compiled_training(model, torch.randn(1, 3, 64, 96),
                            squared_weighted_sum, 'aot_eager', 1e-3)


def _build(config, **backbone):
    backbone = dict(init_cfg=None, drop_path_rate=0., **backbone)
    return build_model(config, {f'model.backbone.{key}': value
                                for key, value in backbone.items()})


class BackboneNeck(torch.nn.Module):

    def __init__(self, detector):
        super().__init__()
        self.backbone, self.neck = detector.backbone, detector.neck

    def forward(self, x):
        return self.neck(self.backbone(x))


@pytest.mark.parametrize('config, scope', [
    ('configs/mask_rcnn_vrwkv_t.py', 'mmdet'),
    ('configs/upernet_vrwkv_t.py', 'mmseg')], ids=['mask_rcnn', 'upernet'])
def test_dense_backbone_neck_compiles_fullgraph(config, scope):
    # SyncBN (paper configs) is BN in one process; BN here for the CPU
    model = _build(config, norm_cfg=dict(type='BN'))
    module = BackboneNeck(model) if scope == 'mmdet' else model.backbone
    check_compiled_training(module, torch.randn(2, 3, 64, 96), weighted_sum,
                            'aot_eager', 1e-3)


@pytest.mark.parametrize('model_fn', [
    lambda: VRWKV(arch='tiny', img_size=224),
    lambda: VRWKVAdapter(arch='tiny', img_size=224)],
    ids=['vrwkv', 'adapter'])
def test_export_with_dynamic_image_size(model_fn):
    model = model_fn().eval()
    # multiples of 32 (the adapter's unit) from 64 to 1024 px
    h = torch.export.Dim('h', min=2, max=32)
    w = torch.export.Dim('w', min=2, max=32)
    ep = torch.export.export(model, (torch.randn(1, 3, 128, 96), ),
                             dynamic_shapes=({2: 32 * h, 3: 32 * w}, ))
    targets = {n.target for n in ep.graph.nodes if n.op == 'call_function'}
    assert torch.ops.mmvrwkv.bi_wkv.default in targets
    for size in [(64, 64), (224, 160)]:
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            want = model(x)
        got = ep.module()(x)
        assert len(got) == len(want)
        for a, b in zip(got, want):
            assert_rel_close(a, b, 1e-5)
