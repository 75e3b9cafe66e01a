"""Multi-scale deformable sampling (the core of Deformable DETR's
attention, no projections) from standard PyTorch operators: bilinear
sampling by ``grid_sample`` per level, weighted and summed. The readable
definition, the fallback on every device, and what ONNX export traces
(``GridSample``)."""
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F

Shapes = Sequence[Tuple[int, int]]


def ms_deform_attn_reference(value: torch.Tensor, shapes: Shapes,
                             sampling_locations: torch.Tensor,
                             attention_weights: torch.Tensor) -> torch.Tensor:
    """Sample every level of ``value`` at ``sampling_locations`` and sum the
    samples with ``attention_weights``.

    Sampling is bilinear with zeros outside the map and pixel centres at
    ``(i + 0.5) / size`` (``align_corners=False``), as mmcv's kernels.

    Args:
        value (Tensor): (B, S, heads, D), the levels' pixels row-major one
            after the other, S = sum(h * w).
        shapes (Sequence[tuple[int, int]]): (h, w) of each level.
        sampling_locations (Tensor): (B, Q, heads, levels, points, 2),
            (x, y) in [0, 1].
        attention_weights (Tensor): (B, Q, heads, levels, points).

    Returns:
        Tensor: (B, Q, heads * D), dtype of ``value``. Computed in the
        wider of value's and the locations' dtypes (bfloat16 locations
        would move the samples by up to 1/256 of a map).
    """
    B, S, heads, D = value.shape
    Q, levels, points = sampling_locations.shape[1], \
        sampling_locations.shape[3], sampling_locations.shape[4]
    out_dtype = value.dtype
    dtype = torch.promote_types(value.dtype, sampling_locations.dtype)
    per_level = value.to(dtype).split([h * w for h, w in shapes], dim=1)
    # grid_sample's coordinates run from -1 to 1 across the map
    grids = (2 * sampling_locations - 1).to(dtype)
    samples = []
    for level, (h, w) in enumerate(shapes):
        # (B * heads, D, h, w) maps, (B * heads, Q, points, 2) grids
        maps = per_level[level].permute(0, 2, 3, 1).reshape(
            B * heads, D, h, w)
        grid = grids[:, :, :, level].transpose(1, 2).reshape(
            B * heads, Q, points, 2)
        samples.append(F.grid_sample(maps, grid, mode='bilinear',
                                     padding_mode='zeros',
                                     align_corners=False))
    # (B * heads, D, Q, levels * points) against (B * heads, 1, Q, ...)
    sampled = torch.stack(samples, dim=-2).flatten(-2)
    weights = attention_weights.transpose(1, 2).reshape(
        B * heads, 1, Q, levels * points).to(sampled.dtype)
    out = (sampled * weights).sum(-1).view(B, heads * D, Q)
    return out.transpose(1, 2).to(out_dtype).contiguous()
