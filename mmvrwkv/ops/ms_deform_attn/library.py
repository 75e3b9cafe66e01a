"""mmcv's multi-scale deformable attention CUDA kernels as the PyTorch
operators ``torch.ops.mmvrwkv.ms_deform_attn`` and
``ms_deform_attn_backward`` (fake implementations and autograd through
``torch.library``), so that models using them compile without graph
breaks and export.

mmcv's own module runs these kernels through an ``autograd.Function`` over
its pybind extension with the level shapes as a tensor, which breaks a
``torch.compile`` graph and does not export. Here the level shapes are
plain (or symbolic) integers. Nothing here imports mmcv until a kernel
runs: the operators are defined with torch alone, and
:func:`mmcv_unsupported` says whether mmcv's kernels are there.
"""
import importlib
import importlib.util
from typing import List, Optional, Tuple

import torch

IM2COL_STEP = 64
KERNEL_DTYPES = (torch.float32, torch.float16, torch.float64)
_ext = []


def _mmcv_ext():
    """mmcv's extension with the two MSDA functions, or an ImportError."""
    if not _ext:
        ext_loader = importlib.import_module('mmcv.utils.ext_loader')
        _ext.append(ext_loader.load_ext(
            '_ext', ['ms_deform_attn_backward', 'ms_deform_attn_forward']))
    return _ext[0]


def mmcv_unsupported(device: torch.device,
                     dtype: Optional[torch.dtype] = None) -> Optional[str]:
    """None where mmcv's kernels run (CUDA tensors, mmcv built with its
    CUDA ops), else why not and the fix."""
    if device.type != 'cuda':
        return f'mmcv has deformable-attention kernels for CUDA only, got ' \
               f'{device.type} tensors'
    if dtype is not None and dtype not in KERNEL_DTYPES:
        return f"mmcv's kernels take float32/float16/float64, got {dtype}"
    if importlib.util.find_spec('mmcv') is None:
        return 'mmcv is not installed (install mmcv with its CUDA ops)'
    try:
        _mmcv_ext()
    except (ImportError, AssertionError) as err:
        return (f'mmcv\'s compiled ops cannot be loaded ({err}); install '
                'mmcv built with its CUDA ops (not mmcv-lite)')
    return None


def _layout(shapes: List[int], device):
    """mmcv's (levels, 2) shape tensor and the levels' start indices."""
    spatial = torch.tensor(shapes, dtype=torch.long,
                           device=device).view(-1, 2)
    sizes = spatial.prod(1)
    return spatial, torch.cat((sizes.new_zeros(1), sizes.cumsum(0)[:-1]))


@torch.library.custom_op('mmvrwkv::ms_deform_attn', mutates_args=(),
                         device_types='cuda')
def ms_deform_attn_op(value: torch.Tensor, shapes: List[int],
                      sampling_locations: torch.Tensor,
                      attention_weights: torch.Tensor) -> torch.Tensor:
    """:func:`~.reference.ms_deform_attn_reference` with mmcv's CUDA kernel;
    ``shapes`` flattened: [h0, w0, h1, w1, ...]."""
    spatial, start = _layout(shapes, value.device)
    return _mmcv_ext().ms_deform_attn_forward(
        value, spatial, start, sampling_locations.to(value.dtype),
        attention_weights.to(value.dtype), im2col_step=IM2COL_STEP)


@ms_deform_attn_op.register_fake
def _(value, shapes, sampling_locations, attention_weights):
    B, Q = sampling_locations.shape[:2]
    return value.new_empty(B, Q, value.shape[2] * value.shape[3])


@torch.library.custom_op('mmvrwkv::ms_deform_attn_backward', mutates_args=(),
                         device_types='cuda')
def ms_deform_attn_backward_op(
        value: torch.Tensor, shapes: List[int],
        sampling_locations: torch.Tensor, attention_weights: torch.Tensor,
        grad: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of :func:`ms_deform_attn_op` for (value,
    sampling_locations, attention_weights), with mmcv's CUDA kernel."""
    spatial, start = _layout(shapes, value.device)
    grads = (torch.zeros_like(value),
             torch.zeros_like(sampling_locations, dtype=value.dtype),
             torch.zeros_like(attention_weights, dtype=value.dtype))
    _mmcv_ext().ms_deform_attn_backward(
        value, spatial, start, sampling_locations.to(value.dtype),
        attention_weights.to(value.dtype), grad.contiguous(), *grads,
        im2col_step=IM2COL_STEP)
    return (grads[0], grads[1].to(sampling_locations.dtype),
            grads[2].to(attention_weights.dtype))


@ms_deform_attn_backward_op.register_fake
def _(value, shapes, sampling_locations, attention_weights, grad):
    return (torch.empty_like(value), torch.empty_like(sampling_locations),
            torch.empty_like(attention_weights))


def _setup_context(ctx, inputs, output):
    value, shapes, sampling_locations, attention_weights = inputs
    ctx.shapes = shapes
    ctx.save_for_backward(value, sampling_locations, attention_weights)


def _backward(ctx, grad):
    value, loc, weights = ctx.saved_tensors
    g_value, g_loc, g_weights = ms_deform_attn_backward_op(
        value, ctx.shapes, loc, weights, grad)
    return g_value, None, g_loc, g_weights


ms_deform_attn_op.register_autograd(_backward, setup_context=_setup_context)


def ms_deform_attn_compiled(value: torch.Tensor, shapes,
                            sampling_locations: torch.Tensor,
                            attention_weights: torch.Tensor) -> torch.Tensor:
    """Multi-scale deformable sampling with mmcv's CUDA kernel, through
    ``torch.ops.mmvrwkv.ms_deform_attn``."""
    flat = [n for shape in shapes for n in shape]
    return torch.ops.mmvrwkv.ms_deform_attn(value, flat, sampling_locations,
                                            attention_weights)
