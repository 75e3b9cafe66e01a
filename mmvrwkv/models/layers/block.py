"""One VRWKV / VRWKV6 layer: Spatial Mix and Channel Mix with residuals."""
from typing import Optional, Sequence

import torch
import torch.nn as nn
from mmcv.cnn.bricks import DropPath

from .channel_mix import ChannelMix
from .checkpoint import maybe_checkpoint
from .spatial_mix import SpatialMix
from .spatial_mix_v6 import SpatialMixV6


class RWKVResidualBlock(nn.Module):
    """The residual wiring shared by the VRWKV and VRWKV6 layers (the
    official ``Block`` of both; same parameter names).

    Pre-norm: ``x + gamma * mix(ln(x))``;
    post-norm: ``x + gamma * ln(mix(x))``.
    Layer 0 also normalises its input (``ln0``).

    Args:
        embed_dims (int): channels C.
        layer_id (int): index of this layer.
        att (nn.Module): the Spatial Mix, called as ``att(x, (H, W))``.
        ffn (nn.Module): the Channel Mix, called the same way.
        drop_path (float): stochastic depth rate. Defaults to 0.
        init_values (float, optional): layer-scale init; None or 0
            disables layer scale. Defaults to None.
        post_norm (bool): post-norm residuals. Defaults to False.
        with_cp (bool): gradient checkpointing of the whole layer.
            Defaults to False.
    """

    def __init__(self,
                 embed_dims: int,
                 layer_id: int,
                 att: nn.Module,
                 ffn: nn.Module,
                 drop_path: float = 0.,
                 init_values: Optional[float] = None,
                 post_norm: bool = False,
                 with_cp: bool = False):
        super().__init__()
        self.layer_id = layer_id
        self.post_norm = post_norm
        self.with_cp = with_cp
        if layer_id == 0:
            self.ln0 = nn.LayerNorm(embed_dims)
        self.ln1 = nn.LayerNorm(embed_dims)
        self.ln2 = nn.LayerNorm(embed_dims)
        self.att = att
        self.ffn = ffn
        self.drop_path = DropPath(drop_path) if drop_path > 0 else \
            nn.Identity()
        # None or 0: no layer scale (0 as in mmpretrain's
        # layer_scale_init_value; a zero gamma would cut the branch off)
        self.layer_scale = bool(init_values)
        if self.layer_scale:
            self.gamma1 = nn.Parameter(init_values * torch.ones(embed_dims))
            self.gamma2 = nn.Parameter(init_values * torch.ones(embed_dims))

    def _residual(self, x, mix, norm, gamma_name, patch_resolution):
        y = norm(mix(x, patch_resolution)) if self.post_norm else \
            mix(norm(x), patch_resolution)
        if self.layer_scale:
            y = getattr(self, gamma_name) * y
        return x + self.drop_path(y)

    def _forward(self, x: torch.Tensor,
                 patch_resolution: Sequence[int]) -> torch.Tensor:
        if self.layer_id == 0:
            x = self.ln0(x)
        x = self._residual(x, self.att, self.ln1, 'gamma1', patch_resolution)
        return self._residual(x, self.ffn, self.ln2, 'gamma2',
                              patch_resolution)

    def forward(self, x: torch.Tensor,
                patch_resolution: Sequence[int]) -> torch.Tensor:
        """x: (B, N, C) tokens of an (H, W) = patch_resolution grid."""
        return maybe_checkpoint(self.with_cp, self._forward, x,
                                patch_resolution)


class VRWKVBlock(RWKVResidualBlock):
    """A VRWKV layer: :class:`SpatialMix` (Bi-WKV) and :class:`ChannelMix`
    in :class:`RWKVResidualBlock`'s residuals.

    Args:
        embed_dims (int): channels C.
        num_layers (int): depth of the backbone.
        layer_id (int): index of this layer.
        shift_mode (str): token shift. Defaults to 'q_shift'.
        channel_gamma (float): channel fraction per shift direction.
            Defaults to 1/4.
        shift_pixel (int): shift distance. Defaults to 1.
        drop_path (float): stochastic depth rate. Defaults to 0.
        hidden_rate (int): Channel Mix expansion. Defaults to 4.
        init_mode (str): 'fancy', 'local' or 'global'. Defaults to 'fancy'.
        init_values (float, optional): layer-scale init; None or 0
            disables layer scale. Defaults to None.
        post_norm (bool): post-norm residuals. Defaults to False.
        key_norm (bool): LayerNorm inside both mixes. Defaults to False.
        with_cp (bool): gradient checkpointing of the whole layer.
            Defaults to False.
        wkv_backend (str): backend of Bi-WKV (:class:`SpatialMix`).
            Defaults to 'auto'.
    """

    def __init__(self,
                 embed_dims: int,
                 num_layers: int,
                 layer_id: int,
                 shift_mode: str = 'q_shift',
                 channel_gamma: float = 1 / 4,
                 shift_pixel: int = 1,
                 drop_path: float = 0.,
                 hidden_rate: int = 4,
                 init_mode: str = 'fancy',
                 init_values: Optional[float] = None,
                 post_norm: bool = False,
                 key_norm: bool = False,
                 with_cp: bool = False,
                 wkv_backend: str = 'auto'):
        att = SpatialMix(embed_dims, num_layers, layer_id, shift_mode,
                         channel_gamma, shift_pixel, init_mode, key_norm,
                         wkv_backend)
        ffn = ChannelMix(embed_dims, num_layers, layer_id, shift_mode,
                         channel_gamma, shift_pixel, hidden_rate, init_mode,
                         key_norm)
        super().__init__(embed_dims, layer_id, att, ffn, drop_path,
                         init_values, post_norm, with_cp)


class VRWKV6Block(RWKVResidualBlock):
    """A VRWKV6 layer: :class:`SpatialMixV6` (Bi-WKV6 over heads of 64
    channels) and the VRWKV :class:`ChannelMix` (whose token shift is
    taken per head), in :class:`RWKVResidualBlock`'s residuals.

    Args:
        embed_dims (int): channels C, a multiple of 64.
        num_layers (int): depth of the backbone.
        layer_id (int): index of this layer.
        shift_mode (str): token shift of both mixes.
            Defaults to 'q_shift_multihead'.
        shift_pixel (int): shift distance, at least 1. Defaults to 1.
        drop_path (float): stochastic depth rate. Defaults to 0.
        hidden_rate (int): Channel Mix expansion. Defaults to 4.
        init_values (float, optional): layer-scale init; None or 0
            disables layer scale. Defaults to None.
        post_norm (bool): post-norm residuals. Defaults to False.
        key_norm (bool): LayerNorm inside both mixes. Defaults to False.
        with_cp (bool): gradient checkpointing of the whole layer.
            Defaults to False.
        wkv_backend (str): backend of Bi-WKV6 (:class:`SpatialMixV6`).
            Defaults to 'auto'.
    """

    def __init__(self,
                 embed_dims: int,
                 num_layers: int,
                 layer_id: int,
                 shift_mode: str = 'q_shift_multihead',
                 shift_pixel: int = 1,
                 drop_path: float = 0.,
                 hidden_rate: int = 4,
                 init_values: Optional[float] = None,
                 post_norm: bool = False,
                 key_norm: bool = False,
                 with_cp: bool = False,
                 wkv_backend: str = 'auto'):
        att = SpatialMixV6(embed_dims, num_layers, layer_id, shift_mode,
                           shift_pixel, key_norm, wkv_backend)
        # gamma 1/4 of each head per direction: every channel is shifted
        ffn = ChannelMix(embed_dims, num_layers, layer_id, shift_mode,
                         1 / 4, shift_pixel, hidden_rate, 'fancy', key_norm)
        super().__init__(embed_dims, layer_id, att, ffn, drop_path,
                         init_values, post_norm, with_cp)
