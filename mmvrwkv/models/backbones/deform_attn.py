"""mmcv's multi-scale deformable attention in a form that compiles and
exports.

mmcv's module runs its CUDA kernel through an ``autograd.Function`` over a
pybind extension, and on other devices a PyTorch function that iterates over
a tensor of level shapes. Both break a ``torch.compile`` graph, and neither
exports. :class:`DeformableAttention` is mmcv's
``MultiScaleDeformableAttention`` (same parameters, names and result) with
the level shapes kept as plain (or symbolic) integers:

* on CUDA, the sampling core is ``torch.ops.mmvrwkv.ms_deform_attn``, mmcv's
  CUDA kernels registered as a PyTorch operator (fake implementation and
  autograd through ``torch.library``);
* elsewhere, mmcv's PyTorch function, which then traces into standard ops.
"""
from typing import List, Sequence, Tuple

import torch
from mmcv.ops import MultiScaleDeformableAttention
from mmcv.ops.multi_scale_deform_attn import \
    multi_scale_deformable_attn_pytorch
from mmcv.utils import ext_loader

Shapes = Sequence[Tuple[int, int]]
IM2COL_STEP = 64


def _ext():
    return ext_loader.load_ext(
        '_ext', ['ms_deform_attn_backward', 'ms_deform_attn_forward'])


def _layout(shapes: List[int], device):
    """mmcv's (levels, 2) shape tensor and level start indices."""
    spatial = torch.tensor(shapes, dtype=torch.long,
                           device=device).view(-1, 2)
    sizes = spatial.prod(1)
    return spatial, torch.cat((sizes.new_zeros(1), sizes.cumsum(0)[:-1]))


@torch.library.custom_op('mmvrwkv::ms_deform_attn', mutates_args=(),
                         device_types='cuda')
def ms_deform_attn(value: torch.Tensor, shapes: List[int],
                   sampling_locations: torch.Tensor,
                   attention_weights: torch.Tensor) -> torch.Tensor:
    """Multi-scale deformable sampling with mmcv's CUDA kernel (the core of
    Deformable DETR's attention, no projections).

    Args:
        value: (B, sum(h*w), heads, dims_per_head).
        shapes: the levels' sizes, flattened: [h0, w0, h1, w1, ...].
        sampling_locations: (B, Q, heads, levels, points, 2), (x, y) in [0, 1].
        attention_weights: (B, Q, heads, levels, points).

    Returns:
        (B, Q, heads * dims_per_head).
    """
    spatial, start = _layout(shapes, value.device)
    return _ext().ms_deform_attn_forward(
        value, spatial, start, sampling_locations.to(value.dtype),
        attention_weights.to(value.dtype), im2col_step=IM2COL_STEP)


@ms_deform_attn.register_fake
def _(value, shapes, sampling_locations, attention_weights):
    B, Q = sampling_locations.shape[:2]
    return value.new_empty(B, Q, value.shape[2] * value.shape[3])


@torch.library.custom_op('mmvrwkv::ms_deform_attn_backward', mutates_args=(),
                         device_types='cuda')
def ms_deform_attn_backward(
        value: torch.Tensor, shapes: List[int],
        sampling_locations: torch.Tensor, attention_weights: torch.Tensor,
        grad: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of :func:`ms_deform_attn` for (value, sampling_locations,
    attention_weights), with mmcv's CUDA kernel."""
    spatial, start = _layout(shapes, value.device)
    grads = (torch.zeros_like(value), torch.zeros_like(sampling_locations),
             torch.zeros_like(attention_weights))
    _ext().ms_deform_attn_backward(
        value, spatial, start, sampling_locations.to(value.dtype),
        attention_weights.to(value.dtype), grad.contiguous(), *grads,
        im2col_step=IM2COL_STEP)
    return grads


@ms_deform_attn_backward.register_fake
def _(value, shapes, sampling_locations, attention_weights, grad):
    return (torch.empty_like(value), torch.empty_like(sampling_locations),
            torch.empty_like(attention_weights))


def _setup_context(ctx, inputs, output):
    value, shapes, sampling_locations, attention_weights = inputs
    ctx.shapes = shapes
    ctx.save_for_backward(value, sampling_locations, attention_weights)


def _backward(ctx, grad):
    value, loc, weights = ctx.saved_tensors
    g_value, g_loc, g_weights = ms_deform_attn_backward(
        value, ctx.shapes, loc, weights, grad)
    return g_value, None, g_loc, g_weights


ms_deform_attn.register_autograd(_backward, setup_context=_setup_context)


class DeformableAttention(MultiScaleDeformableAttention):
    """mmcv's ``MultiScaleDeformableAttention`` (batch first, reference
    points as (x, y)) with level shapes given as integers. Same arguments,
    parameters and result, including the residual
    ``identity + dropout(output)``; ``value_shapes`` replaces the
    ``spatial_shapes``/``level_start_index`` tensors.
    """

    def forward(self, query: torch.Tensor, value: torch.Tensor,
                identity: torch.Tensor, reference_points: torch.Tensor,
                value_shapes: Shapes) -> torch.Tensor:
        """query: (B, Q, C); value: (B, sum(h*w), C); identity like query;
        reference_points: (B or 1, Q, levels, 2); value_shapes: [(h, w)]."""
        B, Q, _ = query.shape
        value = self.value_proj(value).view(B, value.shape[1],
                                            self.num_heads, -1)
        offsets = self.sampling_offsets(query).view(
            B, Q, self.num_heads, self.num_levels, self.num_points, 2)
        weights = self.attention_weights(query).view(
            B, Q, self.num_heads, self.num_levels * self.num_points)
        weights = weights.softmax(-1).view(B, Q, self.num_heads,
                                           self.num_levels, self.num_points)
        # offsets are in pixels of each level: normalise (x, y) by (w, h)
        normalised = torch.stack([
            torch.stack((offsets[:, :, :, i, :, 0] / w,
                         offsets[:, :, :, i, :, 1] / h), -1)
            for i, (h, w) in enumerate(value_shapes)], dim=3)
        locations = reference_points[:, :, None, :, None, :] + normalised
        if value.is_cuda:
            flat = [n for shape in value_shapes for n in shape]
            output = torch.ops.mmvrwkv.ms_deform_attn(value, flat, locations,
                                                      weights)
        else:
            output = multi_scale_deformable_attn_pytorch(
                value, value_shapes, locations, weights)
        return self.dropout(self.output_proj(output)) + identity
