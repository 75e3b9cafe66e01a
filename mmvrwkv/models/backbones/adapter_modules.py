"""Building blocks of the ViT-Adapter used by :class:`VRWKVAdapter`.

Parameter names follow the official Vision-RWKV adapter (itself ViT-Adapter,
Chen et al., ICLR 2023), so its checkpoints load unchanged. The deformable
attention is :class:`DeformableAttention` (mmcv's
``MultiScaleDeformableAttention`` with the level shapes as integers; its
sampling through :func:`mmvrwkv.ops.ms_deform_attn`: mmcv's CUDA kernel on
GPU, standard operators elsewhere), built without dropout and called with
an explicit ``identity`` so it computes exactly the official MSDeformAttn.
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath

from ..layers.checkpoint import maybe_checkpoint
from .deform_attn import DeformableAttention

Shapes = Sequence[Tuple[int, int]]


class DeformInputs:
    """Reference points and level layout for one input size.

    The adapter works on three spatial-prior levels (strides 8, 16, 32) and
    VRWKV tokens (stride 16). The injector's queries are the tokens and its
    values the three levels; the extractor's queries are the three levels and
    its value the tokens. Level sizes stay Python (or symbolic) integers, so
    no shape is read back from a tensor.

    Args:
        height, width (int): input size, a multiple of 32.
        device: where the tensors live.
    """

    def __init__(self, height: int, width: int, device: torch.device):
        self.level_shapes: List[Tuple[int, int]] = [
            (height // s, width // s) for s in (8, 16, 32)]
        token_shape = [self.level_shapes[1]]
        self.injector = dict(
            reference_points=reference_points(token_shape, device),
            value_shapes=self.level_shapes)
        self.extractor = dict(
            reference_points=reference_points(self.level_shapes, device),
            value_shapes=token_shape)


def reference_points(shapes: Shapes, device) -> torch.Tensor:
    """Normalised (x, y) centres of every cell of every grid in ``shapes``,
    as (1, sum(h*w), 1, 2): one reference per query, shared by all levels."""
    points = []
    for h, w in shapes:
        # (i + 0.5) / n: arange keeps n symbolic in exported graphs
        ys = (torch.arange(h, device=device) + 0.5) / h
        xs = (torch.arange(w, device=device) + 0.5) / w
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing='ij')
        points.append(torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)),
                                  -1))
    return torch.cat(points, 0)[None, :, None]


def tokens_to_map(tokens: torch.Tensor, shape: Tuple[int, int]):
    """(B, h*w, C) tokens -> contiguous (B, C, h, w) map.

    Contiguous as in the official code, and not only for speed: a transposed
    view of a batch of one has strides (C, 1, w*C, C), which torch's CPU
    BatchNorm backward (2.14) misreads, returning wrong gradients for the
    norm's weight, bias and input (eager only; compiled graphs are right).
    """
    B, _, C = tokens.shape
    return tokens.transpose(1, 2).reshape(B, C, *shape).contiguous()


def _deform_attn(dims: int, num_heads: int, num_levels: int, num_points: int,
                 deform_ratio: float, backend: str) -> DeformableAttention:
    return DeformableAttention(
        embed_dims=dims,
        num_heads=num_heads,
        num_levels=num_levels,
        num_points=num_points,
        dropout=0.,
        value_proj_ratio=deform_ratio,
        backend=backend)


class DWConv(nn.Module):
    """3x3 depth-wise conv applied to each level of a concatenated
    multi-level token sequence (B, sum(h*w), C)."""

    def __init__(self, dims: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dims, dims, 3, 1, 1, groups=dims)

    def forward(self, x: torch.Tensor, shapes: Shapes) -> torch.Tensor:
        sizes = [h * w for h, w in shapes]
        return torch.cat([
            self.dwconv(tokens_to_map(part, shape)).flatten(2).transpose(1, 2)
            for part, shape in zip(x.split(sizes, dim=1), shapes)
        ], dim=1)


class ConvFFN(nn.Module):
    """Linear -> depth-wise conv -> GELU -> Linear, over multi-level tokens."""

    def __init__(self, dims: int, hidden_dims: int, drop: float = 0.):
        super().__init__()
        self.fc1 = nn.Linear(dims, hidden_dims)
        self.dwconv = DWConv(hidden_dims)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dims, dims)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, shapes: Shapes) -> torch.Tensor:
        x = self.act(self.dwconv(self.fc1(x), shapes))
        return self.drop(self.fc2(self.drop(x)))


class Injector(nn.Module):
    """Spatial prior -> tokens: ``x + gamma * attn(norm(x), norm(c))``.

    Args:
        dims (int): channels.
        num_heads (int): deformable-attention heads.
        num_points (int): sampling points per head and level.
        deform_ratio (float): value-projection width / dims.
        init_values (float): initial gamma. Defaults to 0 (the adapter
            starts as the plain backbone).
        with_cp (bool): gradient checkpointing.
        deform_attn_backend (str): backend of the deformable sampling
            (:func:`mmvrwkv.ops.ms_deform_attn`). Defaults to 'auto'.
    """

    def __init__(self, dims: int, num_heads: int, num_points: int,
                 deform_ratio: float, init_values: float = 0.,
                 with_cp: bool = False, deform_attn_backend: str = 'auto'):
        super().__init__()
        self.with_cp = with_cp
        self.query_norm = nn.LayerNorm(dims, eps=1e-6)
        self.feat_norm = nn.LayerNorm(dims, eps=1e-6)
        self.attn = _deform_attn(dims, num_heads, 3, num_points, deform_ratio,
                                 deform_attn_backend)
        self.gamma = nn.Parameter(init_values * torch.ones(dims))

    def _forward(self, x, c, layout):
        attn = self.attn(
            query=self.query_norm(x),
            value=self.feat_norm(c),
            identity=torch.zeros_like(x),
            **layout)
        return x + self.gamma * attn

    def forward(self, x: torch.Tensor, c: torch.Tensor,
                layout: dict) -> torch.Tensor:
        return maybe_checkpoint(self.with_cp, self._forward, x, c, layout)


class Extractor(nn.Module):
    """Tokens -> spatial prior: ``c + attn(norm(c), norm(x))``, then
    ``c + drop_path(ConvFFN(norm(c)))``.

    Args:
        dims, num_heads, num_points, deform_ratio: as :class:`Injector`.
        with_cffn (bool): add the ConvFFN. Defaults to True.
        cffn_ratio (float): ConvFFN hidden width / dims. Defaults to 0.25.
        drop (float): ConvFFN dropout. Defaults to 0.
        drop_path (float): stochastic depth on the ConvFFN. Defaults to 0.
        with_cp (bool): gradient checkpointing.
        deform_attn_backend (str): as :class:`Injector`.
    """

    def __init__(self, dims: int, num_heads: int, num_points: int,
                 deform_ratio: float, with_cffn: bool = True,
                 cffn_ratio: float = 0.25, drop: float = 0.,
                 drop_path: float = 0., with_cp: bool = False,
                 deform_attn_backend: str = 'auto'):
        super().__init__()
        self.with_cp = with_cp
        self.query_norm = nn.LayerNorm(dims, eps=1e-6)
        self.feat_norm = nn.LayerNorm(dims, eps=1e-6)
        self.attn = _deform_attn(dims, num_heads, 1, num_points, deform_ratio,
                                 deform_attn_backend)
        self.with_cffn = with_cffn
        if with_cffn:
            self.ffn = ConvFFN(dims, int(dims * cffn_ratio), drop)
            self.ffn_norm = nn.LayerNorm(dims, eps=1e-6)
            self.drop_path = DropPath(drop_path) if drop_path > 0 else \
                nn.Identity()

    def _forward(self, c, x, layout, shapes):
        c = self.attn(
            query=self.query_norm(c),
            value=self.feat_norm(x),
            identity=c,
            **layout)
        if self.with_cffn:
            c = c + self.drop_path(self.ffn(self.ffn_norm(c), shapes))
        return c

    def forward(self, c: torch.Tensor, x: torch.Tensor, layout: dict,
                shapes: Shapes) -> torch.Tensor:
        return maybe_checkpoint(self.with_cp, self._forward, c, x, layout,
                                shapes)


class InteractionBlock(nn.Module):
    """Injector, a group of backbone layers, extractor (and, in the last
    block, two extra extractors)."""

    def __init__(self, dims: int, num_heads: int, num_points: int,
                 deform_ratio: float, with_cffn: bool, cffn_ratio: float,
                 drop: float, drop_path: float, init_values: float,
                 extra_extractor: bool, with_cp: bool,
                 deform_attn_backend: str = 'auto'):
        super().__init__()
        self.injector = Injector(dims, num_heads, num_points, deform_ratio,
                                 init_values, with_cp, deform_attn_backend)
        extractor = dict(
            dims=dims, num_heads=num_heads, num_points=num_points,
            deform_ratio=deform_ratio, with_cffn=with_cffn,
            cffn_ratio=cffn_ratio, drop=drop, drop_path=drop_path,
            with_cp=with_cp, deform_attn_backend=deform_attn_backend)
        self.extractor = Extractor(**extractor)
        self.extra_extractors = nn.Sequential(
            *[Extractor(**extractor) for _ in range(2)]) \
            if extra_extractor else None

    def forward(self, x: torch.Tensor, c: torch.Tensor,
                layers: Sequence[nn.Module], inputs: DeformInputs,
                patch_resolution: Tuple[int, int]):
        x = self.injector(x, c, inputs.injector)
        for layer in layers:
            x = layer(x, patch_resolution)
        extractors = [self.extractor]
        if self.extra_extractors is not None:
            extractors += list(self.extra_extractors)
        for extractor in extractors:
            c = extractor(c, x, inputs.extractor, inputs.level_shapes)
        return x, c


class SpatialPriorModule(nn.Module):
    """Convolutional stem giving features at strides 4, 8, 16 and 32, each
    projected to ``embed_dims``.

    Returns ``c1`` as (B, C, H/4, W/4) and ``c2..c4`` flattened to
    (B, h*w, C).
    """

    def __init__(self, inplanes: int, embed_dims: int, norm_cfg: dict,
                 with_cp: bool = False):
        super().__init__()
        self.with_cp = with_cp

        def conv_bn_relu(cin, cout, stride):
            return [
                nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                build_norm_layer(norm_cfg, cout)[1],
                nn.ReLU(inplace=True)
            ]

        self.stem = nn.Sequential(
            *conv_bn_relu(3, inplanes, 2),
            *conv_bn_relu(inplanes, inplanes, 1),
            *conv_bn_relu(inplanes, inplanes, 1),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        self.conv2 = nn.Sequential(*conv_bn_relu(inplanes, 2 * inplanes, 2))
        self.conv3 = nn.Sequential(
            *conv_bn_relu(2 * inplanes, 4 * inplanes, 2))
        self.conv4 = nn.Sequential(
            *conv_bn_relu(4 * inplanes, 4 * inplanes, 2))
        self.fc1 = nn.Conv2d(inplanes, embed_dims, 1)
        self.fc2 = nn.Conv2d(2 * inplanes, embed_dims, 1)
        self.fc3 = nn.Conv2d(4 * inplanes, embed_dims, 1)
        self.fc4 = nn.Conv2d(4 * inplanes, embed_dims, 1)

    def _forward(self, x):
        c1 = self.stem(x)
        c2 = self.conv2(c1)
        c3 = self.conv3(c2)
        c4 = self.conv4(c3)
        flat = [fc(c).flatten(2).transpose(1, 2)
                for fc, c in ((self.fc2, c2), (self.fc3, c3), (self.fc4, c4))]
        return (self.fc1(c1), *flat)

    def forward(self, x: torch.Tensor):
        return maybe_checkpoint(self.with_cp, self._forward, x)
