"""Spatial Mix: the token-mixing half of a VRWKV block (Bi-WKV attention)."""
from typing import List, Sequence

import torch
import torch.nn as nn

from mmvrwkv.ops import BI_WKV_BACKENDS, bi_wkv
from .mixing_init import spatial_mix_init
from .shift import get_shift_func
from .sparse import (MASKED_KEY, Layout, gather_from_grid, on_full_grid,
                     scatter_to_grid, shift_tokens)


def shift_and_mix(module: nn.Module, x: torch.Tensor, patch_resolution: Layout,
                  names: Sequence[str]) -> List[torch.Tensor]:
    """``x * mix + shift(x) * (1 - mix)`` for each mixing parameter in
    ``names`` (x itself for every name when shifting is off).
    ``patch_resolution`` is the (H, W) grid, or the
    :class:`~.sparse.KeptTokens` of a masked image."""
    if module.shift_pixel <= 0:
        return [x] * len(names)
    xx = shift_tokens(module.shift_func, x, module.shift_pixel,
                      module.channel_gamma, patch_resolution)
    return [torch.lerp(xx, x, getattr(module, name)) for name in names]


class SpatialMix(nn.Module):
    """Q-Shift, then ``sigmoid(r) * BiWKV(w/T, u/T, k, v)``, projected.

    Parameter names follow the official implementation (``spatial_decay``,
    ``spatial_first``, ``spatial_mix_{k,v,r}``, ``key``, ``value``,
    ``receptance``, ``key_norm``, ``output``).

    Args:
        embed_dims (int): channels C.
        num_layers (int): depth of the backbone (for the fancy init).
        layer_id (int): index of this layer (for the fancy init).
        shift_mode (str): token shift. Defaults to 'q_shift'.
        channel_gamma (float): channel fraction per shift direction.
            Defaults to 1/4.
        shift_pixel (int): shift distance; 0 disables shifting and its
            mixing parameters. Defaults to 1.
        init_mode (str): 'fancy', 'local' or 'global'. Defaults to 'fancy'.
        key_norm (bool): LayerNorm on the Bi-WKV output. Defaults to False.
        wkv_backend (str): backend of Bi-WKV (:func:`mmvrwkv.ops.bi_wkv`):
            'auto', 'compiled', 'chunked' or 'reference'. Defaults to
            'auto'.
    """

    def __init__(self,
                 embed_dims: int,
                 num_layers: int,
                 layer_id: int,
                 shift_mode: str = 'q_shift',
                 channel_gamma: float = 1 / 4,
                 shift_pixel: int = 1,
                 init_mode: str = 'fancy',
                 key_norm: bool = False,
                 wkv_backend: str = 'auto'):
        super().__init__()
        BI_WKV_BACKENDS.check_name(wkv_backend)
        self.wkv_backend = wkv_backend
        self.shift_pixel = shift_pixel
        self.channel_gamma = channel_gamma
        init = spatial_mix_init(init_mode, embed_dims, layer_id, num_layers)
        self.spatial_decay = nn.Parameter(init['spatial_decay'])
        self.spatial_first = nn.Parameter(init['spatial_first'])
        if shift_pixel > 0:
            self.shift_func = get_shift_func(shift_mode)
            for name in ('spatial_mix_k', 'spatial_mix_v', 'spatial_mix_r'):
                setattr(self, name, nn.Parameter(init[name]))
        self.key = nn.Linear(embed_dims, embed_dims, bias=False)
        self.value = nn.Linear(embed_dims, embed_dims, bias=False)
        self.receptance = nn.Linear(embed_dims, embed_dims, bias=False)
        self.key_norm = nn.LayerNorm(embed_dims) if key_norm else None
        self.output = nn.Linear(embed_dims, embed_dims, bias=False)

    def forward(self, x: torch.Tensor,
                patch_resolution: Layout) -> torch.Tensor:
        """x: (B, N, C) -> (B, N, C); ``patch_resolution``: the (H, W) grid,
        or the :class:`~.sparse.KeptTokens` of a masked image."""
        xk, xv, xr = shift_and_mix(
            self, x, patch_resolution,
            ('spatial_mix_k', 'spatial_mix_v', 'spatial_mix_r'))
        k, v = self.key(xk), self.value(xv)
        sr = torch.sigmoid(self.receptance(xr))
        del xk, xv, xr  # free them before the scan (inference peak memory)
        y = self._wkv(k, v, patch_resolution)
        if self.key_norm is not None:
            y = self.key_norm(y)
        return self.output(sr * y)

    def _wkv(self, k: torch.Tensor, v: torch.Tensor,
             layout: Layout) -> torch.Tensor:
        """Bi-WKV of the tokens: over the sequence, or (a masked image in
        'grid' mode) over the full grid with the removed tokens' keys at
        MASKED_KEY, so that visible tokens see each other at their true
        distance."""
        full = on_full_grid(layout)
        if full:
            k = scatter_to_grid(k, layout, MASKED_KEY)
            v = scatter_to_grid(v, layout)
        # Both decay and bonus are divided by the token count, as in the
        # official model (the paper's equation divides only the decay).
        T = k.shape[1]
        y = bi_wkv(self.spatial_decay / T, self.spatial_first / T, k, v,
                   backend=self.wkv_backend)
        return gather_from_grid(y, layout) if full else y
