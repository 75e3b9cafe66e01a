"""Spatial Mix of VRWKV6: data-dependent token shift and decay (RWKV-6),
Bi-WKV6 over heads of 64 channels, GroupNorm per head, SiLU gate."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmvrwkv.ops import BI_WKV6_BACKENDS, bi_wkv6
from .mixing_init import spatial_mix_v6_init
from .shift import get_shift_func
from .sparse import (Layout, gather_from_grid, on_full_grid, scatter_to_grid,
                     shift_tokens)

# widths of the low-rank projections (the official TIME_MIX_EXTRA_DIM and
# TIME_DECAY_EXTRA_DIM) and the head size of every official model (the
# default head_dim of q_shift_multihead)
MIX_RANK = 32
DECAY_RANK = 64
HEAD_SIZE = 64


class SpatialMixV6(nn.Module):
    """The token-mixing half of a VRWKV6 block (official
    ``VRWKV_SpatialMix_V6``; same parameter names).

    With ``xx = shift(x) - x``:

    1. data-dependent token shift: ``m = x + xx * time_maa_x`` goes through
       a low-rank tanh projection (``time_maa_w1``, ``time_maa_w2``) that
       gives five (B, T, C) offsets ``mw, mk, mv, mr, mg``; then
       ``x_* = x + xx * (time_maa_* + m*)`` for * in w, k, v, r, g;
    2. ``r, k, v = receptance(x_r), key(x_k), value(x_v)``,
       ``g = silu(gate(x_g))``, and the per-token decay
       ``w = time_decay + tanh(x_w @ time_decay_w1) @ time_decay_w2``;
    3. ``y = BiWKV6(r, k, v, w, time_faaaa)`` (decay ``exp(-exp(w))``, not
       divided by the token count), optional ``key_norm``, GroupNorm over
       the heads (``ln_x``), then ``output(y * g)``.

    Args:
        embed_dims (int): channels C, a multiple of the head size 64.
        num_layers (int): depth of the backbone (for the initialisation).
        layer_id (int): index of this layer (for the initialisation).
        shift_mode (str): token shift. Defaults to 'q_shift_multihead'.
        shift_pixel (int): shift distance, at least 1. Defaults to 1.
        key_norm (bool): LayerNorm on the Bi-WKV6 output. Defaults to False.
        wkv_backend (str): backend of Bi-WKV6 (:func:`mmvrwkv.ops.bi_wkv6`):
            'auto', 'compiled', 'fla', 'chunked' or 'reference'. Defaults
            to 'auto'.
    """

    def __init__(self,
                 embed_dims: int,
                 num_layers: int,
                 layer_id: int,
                 shift_mode: str = 'q_shift_multihead',
                 shift_pixel: int = 1,
                 key_norm: bool = False,
                 wkv_backend: str = 'auto'):
        super().__init__()
        BI_WKV6_BACKENDS.check_name(wkv_backend)
        self.wkv_backend = wkv_backend
        if embed_dims % HEAD_SIZE:
            raise ValueError(f'SpatialMixV6: embed_dims {embed_dims} is not '
                             f'a multiple of the head size {HEAD_SIZE}')
        if shift_pixel < 1:
            raise ValueError(f'SpatialMixV6: shift_pixel must be >= 1, got '
                             f'{shift_pixel}')
        C = embed_dims
        self.num_heads = C // HEAD_SIZE
        self.shift_pixel = shift_pixel
        self.shift_func = get_shift_func(shift_mode)
        init = spatial_mix_v6_init(C, self.num_heads, layer_id, num_layers)
        for name, value in init.items():
            setattr(self, name, nn.Parameter(value))

        def small(*shape):
            return nn.Parameter(torch.empty(shape).uniform_(-1e-4, 1e-4))

        self.time_maa_w1 = small(C, MIX_RANK * 5)
        self.time_maa_w2 = small(5, MIX_RANK, C)
        self.time_decay_w1 = small(C, DECAY_RANK)
        self.time_decay_w2 = small(DECAY_RANK, C)

        self.key = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(C, C, bias=False)
        self.receptance = nn.Linear(C, C, bias=False)
        self.gate = nn.Linear(C, C, bias=False)
        self.key_norm = nn.LayerNorm(C) if key_norm else None
        self.output = nn.Linear(C, C, bias=False)
        self.ln_x = nn.GroupNorm(self.num_heads, C, eps=1e-5)

    def forward(self, x: torch.Tensor,
                patch_resolution: Layout) -> torch.Tensor:
        """x: (B, N, C) -> (B, N, C); ``patch_resolution``: the (H, W) grid,
        or the :class:`~.sparse.KeptTokens` of a masked image."""
        B, T, C = x.shape
        # shift groups of 1/4 of each head (all channels of it)
        xx = shift_tokens(self.shift_func, x, self.shift_pixel, 1 / 4,
                          patch_resolution) - x
        m = torch.tanh((x + xx * self.time_maa_x) @ self.time_maa_w1)
        m = m.view(B * T, 5, MIX_RANK).transpose(0, 1)
        mw, mk, mv, mr, mg = torch.bmm(m, self.time_maa_w2).view(
            5, B, T, C).unbind(0)
        xw = x + xx * (self.time_maa_w + mw)
        xk = x + xx * (self.time_maa_k + mk)
        xv = x + xx * (self.time_maa_v + mv)
        xr = x + xx * (self.time_maa_r + mr)
        xg = x + xx * (self.time_maa_g + mg)
        del m, mw, mk, mv, mr, mg, xx

        r = self.receptance(xr)
        k = self.key(xk)
        v = self.value(xv)
        g = F.silu(self.gate(xg))
        w = self.time_decay + torch.tanh(
            xw @ self.time_decay_w1) @ self.time_decay_w2
        del xw, xk, xv, xr, xg
        # float32 (float64 for float64 input), as the official kernel;
        # back to the stream's dtype for the norms.
        y = self._wkv6(r, k, v, w, patch_resolution).to(x.dtype)
        if self.key_norm is not None:
            y = self.key_norm(y)
        y = self.ln_x(y.reshape(B * T, C)).view(B, T, C)
        return self.output(y * g)

    def _wkv6(self, r, k, v, w, layout: Layout) -> torch.Tensor:
        """Bi-WKV6 of the tokens: over the sequence, or (a masked image in
        'grid' mode) over the full grid, where removed tokens add nothing
        (r = k = v = 0) and decay the state by the layer's data-independent
        decay (``time_decay``), so visible tokens see each other at their
        true distance."""
        if not on_full_grid(layout):
            return bi_wkv6(r, k, v, w, self.time_faaaa,
                           backend=self.wkv_backend)
        r, k, v = (scatter_to_grid(x, layout) for x in (r, k, v))
        w = scatter_to_grid(w, layout, self.time_decay.to(w.dtype))
        y = bi_wkv6(r, k, v, w, self.time_faaaa, backend=self.wkv_backend)
        return gather_from_grid(y, layout)
