"""Multi-scale deformable attention (Deformable DETR's MSDeformAttn) as the
ViT-Adapter uses it: projections around :func:`mmvrwkv.ops.ms_deform_attn`.

Parameters, their names and their initialisation are those of mmcv's
``MultiScaleDeformableAttention`` (and of the official adapter's
MSDeformAttn), so checkpoints load unchanged; unlike mmcv's module it keeps
the level shapes as plain (or symbolic) integers, so models compile without
graph breaks and export, and it needs no compiled mmcv: the sampling runs
mmcv's CUDA kernel where one is installed and standard operators elsewhere
(``backend``).
"""
import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.model.weight_init import constant_init, xavier_init

from mmvrwkv.ops import MS_DEFORM_ATTN_BACKENDS, ms_deform_attn
from ..flop_handles import register_flop_handles

Shapes = Sequence[Tuple[int, int]]


class DeformableAttention(BaseModule):
    """Multi-scale deformable attention, batch first, reference points as
    (x, y) in [0, 1]: ``identity + dropout(output_proj(sample(...)))``, as
    mmcv's ``MultiScaleDeformableAttention`` computes it.

    Args:
        embed_dims (int): query and output channels. Defaults to 256.
        num_heads (int): attention heads. Defaults to 8.
        num_levels (int): levels of the value. Defaults to 4.
        num_points (int): sampling points per head and level. Defaults to 4.
        dropout (float): dropout on the output before the residual.
            Defaults to 0.1 (mmcv's default; the adapter passes 0).
        value_proj_ratio (float): value projection width / embed_dims.
            Defaults to 1.0.
        backend (str): backend of the sampling
            (:func:`mmvrwkv.ops.ms_deform_attn`). Defaults to 'auto'.
        init_cfg (dict, optional): mmengine initialisation config.
            Defaults to None.
    """

    def __init__(self,
                 embed_dims: int = 256,
                 num_heads: int = 8,
                 num_levels: int = 4,
                 num_points: int = 4,
                 dropout: float = 0.1,
                 value_proj_ratio: float = 1.0,
                 backend: str = 'auto',
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg)
        register_flop_handles()  # mmengine's counter then counts sampling
        if embed_dims % num_heads != 0:
            raise ValueError(f'embed_dims must be divisible by num_heads, '
                             f'got {embed_dims} and {num_heads}')
        MS_DEFORM_ATTN_BACKENDS.check_name(backend)
        self.backend = backend
        self.dropout = nn.Dropout(dropout)
        self.embed_dims = embed_dims
        self.num_levels = num_levels
        self.num_heads = num_heads
        self.num_points = num_points
        # created in mmcv's order, so one seed gives mmcv's initial weights
        self.sampling_offsets = nn.Linear(
            embed_dims, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dims,
                                           num_heads * num_levels * num_points)
        value_dims = int(embed_dims * value_proj_ratio)
        self.value_proj = nn.Linear(embed_dims, value_dims)
        self.output_proj = nn.Linear(value_dims, embed_dims)
        self.init_weights()

    def init_weights(self) -> None:
        """Deformable DETR's initialisation: no offsets from the weights,
        biases that put head i's points on a ray at angle 2 pi i / heads
        (point j at distance j + 1), uniform attention, Xavier projections.
        """
        constant_init(self.sampling_offsets, 0.)
        device = self.sampling_offsets.weight.device
        thetas = torch.arange(self.num_heads, dtype=torch.float32,
                              device=device) * (2.0 * math.pi /
                                                self.num_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(
            self.num_heads, 1, 1, 2).repeat(1, self.num_levels,
                                            self.num_points, 1)
        for i in range(self.num_points):
            grid[:, :, i, :] *= i + 1
        self.sampling_offsets.bias.data = grid.view(-1)
        constant_init(self.attention_weights, val=0., bias=0.)
        xavier_init(self.value_proj, distribution='uniform', bias=0.)
        xavier_init(self.output_proj, distribution='uniform', bias=0.)
        self._is_init = True

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
        output = ms_deform_attn(value, value_shapes, locations, weights,
                                backend=self.backend)
        return self.dropout(self.output_proj(output)) + identity
