"""Checks shared by the tests of both adapters (test_vrwkv_adapter.py,
test_vrwkv6_adapter.py); each test file runs them on its own small model."""
import torch

from mmvrwkv.models.backbones.deform_attn import DeformableAttention


def expected_adapter_params(C, heads, ratio, blocks, inplane=64,
                            cffn=0.25, points=4):
    """Count of the adapter's own parameters, from its architecture."""
    def deform(levels):
        v = int(C * ratio)
        return (C * heads * levels * points * 2 + heads * levels * points * 2
                + C * heads * levels * points + heads * levels * points
                + C * v + v + v * C + C)

    def ln():
        return 2 * C
    h = int(C * cffn)
    ffn = C * h + h + 9 * h + h + h * C + C
    injector = C + 2 * ln() + deform(3)
    extractor = 2 * ln() + deform(1) + ffn + ln()
    i = inplane
    spm = (27 * i + 2 * i + 2 * (9 * i * i + 2 * i)  # stem
           + 9 * i * 2 * i + 4 * i + 9 * 2 * i * 4 * i + 8 * i
           + 9 * 4 * i * 4 * i + 8 * i
           + (i + 2 * i + 4 * i + 4 * i) * C + 4 * C)  # fc1..fc4
    up = C * C * 4 + C
    norms = 4 * 2 * C
    return (3 * C + spm + blocks * (injector + extractor)
            + 2 * extractor + up + norms)


def check_four_maps_at_strides_4_to_32(model, size):
    """Four contiguous, finite maps of ``model.embed_dims`` channels at
    strides 4, 8, 16 and 32 of the input padded to a multiple of 32."""
    model.eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 3, *size))
    assert len(outs) == 4
    H, W = (-(-s // 32) * 32 for s in size)  # padded to a multiple of 32
    for out, stride in zip(outs, (4, 8, 16, 32)):
        assert out.shape == (2, model.embed_dims, H // stride, W // stride)
        assert out.is_contiguous()
        assert torch.isfinite(out).all()


def check_gradients_reach_every_parameter(model):
    # the deformable attention starts with zero offset/weight projections,
    # which block the gradient to its queries; move them off zero
    for m in model.modules():
        if isinstance(m, DeformableAttention):
            torch.nn.init.normal_(m.sampling_offsets.weight, std=0.01)
            torch.nn.init.normal_(m.attention_weights.weight, std=0.01)
    outs = model(torch.randn(2, 3, 64, 96))
    sum((o * torch.randn_like(o)).sum() for o in outs).backward()
    missing = [n for n, p in model.named_parameters()
               if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == []


def check_with_cp_matches(a, b):
    """``b`` (with_cp=True, ``a``'s weights) gives ``a``'s outputs and
    gradients in training mode."""
    a.train(), b.train()
    x = torch.randn(2, 3, 64, 64)
    ya, yb = a(x), b(x)
    for u, v in zip(ya, yb):
        torch.testing.assert_close(u, v)
    sum(o.sum() for o in ya).backward()
    sum(o.sum() for o in yb).backward()
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-4,
                                   msg=n)
