"""The Python half of the compiled Bi-WKV6 operator.

``torch.ops.mmvrwkv.bi_wkv6`` and ``bi_wkv6_backward`` (schemas, CPU and
CUDA kernels: ``cuda_ops/bi_wkv6/``) are registered in C++ when the
extension loads; this module adds, as for Bi-WKV, their fake (meta)
implementations and autograd formula through ``torch.library``.
"""
import torch

from ..common.library import CompiledOp, accumulation_dtype


def _fake_forward(r, k, v, w, u):
    return r.new_empty(r.shape, dtype=accumulation_dtype(r.dtype))


def _fake_backward(r, k, v, w, u, gy):
    return (r.new_empty(r.shape), k.new_empty(k.shape), v.new_empty(v.shape),
            w.new_empty(w.shape), u.new_empty(u.shape))


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, gy):
    r, k, v, w, u = ctx.saved_tensors
    return torch.ops.mmvrwkv.bi_wkv6_backward(
        r, k, v, w, u, gy.to(accumulation_dtype(r.dtype)))


BI_WKV6 = CompiledOp('bi_wkv6', _fake_forward, _fake_backward, _backward,
                     _setup_context)


def bi_wkv6_compiled(r: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     w: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Bi-WKV6 with the compiled kernels, which take r, k, v, w of one
    dtype and u in the accumulation dtype. Mixed inputs (e.g. a float32 w
    beside bfloat16 r under autocast) all go in r's accumulation dtype,
    which is what the reference computes in, so no input loses
    precision."""
    acc = accumulation_dtype(r.dtype)
    if not (k.dtype == v.dtype == w.dtype == r.dtype):
        r, k, v, w = (x.to(acc) for x in (r, k, v, w))
    return torch.ops.mmvrwkv.bi_wkv6(r, k, v, w, u.to(acc))
