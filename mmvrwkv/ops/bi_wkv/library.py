"""The Python half of the compiled Bi-WKV operator.

``torch.ops.mmvrwkv.bi_wkv`` and ``bi_wkv_backward`` (schemas, CPU and CUDA
kernels: ``cuda_ops/bi_wkv/``) are registered in C++ when the extension
loads. This module adds what PyTorch's custom-operator guide asks of
Python: fake (meta) implementations, so that ``torch.compile`` and
``torch.export`` trace the operator without running it, and its autograd
formula. Nothing here copies to the host or branches on tensor values, so
a compiled model has no graph break.
"""
import torch

from ..common.library import CompiledOp, accumulation_dtype


def _fake_forward(w, u, k, v):
    return k.new_empty(k.shape)


def _fake_backward(w, u, k, v, gy):
    return (w.new_empty(w.shape), u.new_empty(u.shape), k.new_empty(k.shape),
            v.new_empty(v.shape))


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, gy):
    w, u, k, v = ctx.saved_tensors
    return torch.ops.mmvrwkv.bi_wkv_backward(w, u, k, v, gy.to(k.dtype))


BI_WKV = CompiledOp('bi_wkv', _fake_forward, _fake_backward, _backward,
                    _setup_context)


def bi_wkv_compiled(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor,
                    v: torch.Tensor) -> torch.Tensor:
    """Bi-WKV with the compiled kernels (w and u go in the accumulation
    dtype, as the kernels take them; their gradients come back in their
    own dtype)."""
    acc = accumulation_dtype(k.dtype)
    return torch.ops.mmvrwkv.bi_wkv(w.to(acc), u.to(acc), k, v)
