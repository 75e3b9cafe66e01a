"""Channel Mix: the feed-forward half of a VRWKV block (squared ReLU)."""
import torch
import torch.nn as nn

from .mixing_init import channel_mix_init
from .shift import get_shift_func
from .sparse import Layout
from .spatial_mix import shift_and_mix


class ChannelMix(nn.Module):
    """Q-Shift, then ``sigmoid(R x_r) * V relu(K x_k)^2``.

    Args:
        embed_dims (int): channels C.
        num_layers (int): depth of the backbone (for the fancy init).
        layer_id (int): index of this layer (for the fancy init).
        shift_mode (str): token shift. Defaults to 'q_shift'.
        channel_gamma (float): channel fraction per shift direction.
            Defaults to 1/4.
        shift_pixel (int): shift distance; 0 disables shifting.
            Defaults to 1.
        hidden_rate (int): hidden width is ``hidden_rate * C``. Defaults to 4.
        init_mode (str): 'fancy', 'local' or 'global'. Defaults to 'fancy'.
        key_norm (bool): LayerNorm after the squared ReLU. Defaults to False.
    """

    def __init__(self,
                 embed_dims: int,
                 num_layers: int,
                 layer_id: int,
                 shift_mode: str = 'q_shift',
                 channel_gamma: float = 1 / 4,
                 shift_pixel: int = 1,
                 hidden_rate: int = 4,
                 init_mode: str = 'fancy',
                 key_norm: bool = False):
        super().__init__()
        self.shift_pixel = shift_pixel
        self.channel_gamma = channel_gamma
        init = channel_mix_init(init_mode, embed_dims, layer_id, num_layers)
        if shift_pixel > 0:
            self.shift_func = get_shift_func(shift_mode)
            for name in ('spatial_mix_k', 'spatial_mix_r'):
                setattr(self, name, nn.Parameter(init[name]))
        hidden = int(hidden_rate * embed_dims)
        self.key = nn.Linear(embed_dims, hidden, bias=False)
        self.key_norm = nn.LayerNorm(hidden) if key_norm else None
        self.receptance = nn.Linear(embed_dims, embed_dims, bias=False)
        self.value = nn.Linear(hidden, embed_dims, bias=False)

    def forward(self, x: torch.Tensor,
                patch_resolution: Layout) -> torch.Tensor:
        """x: (B, N, C) -> (B, N, C); ``patch_resolution``: the (H, W) grid,
        or the :class:`~.sparse.KeptTokens` of a masked image."""
        xk, xr = shift_and_mix(self, x, patch_resolution,
                               ('spatial_mix_k', 'spatial_mix_r'))
        r = torch.sigmoid(self.receptance(xr))
        k = self.key(xk)
        # Dropping the inputs and, without autograd, squaring in place keep
        # one hidden-width (4C) activation alive instead of three: the
        # inference peak memory of the backbone.
        del xk, xr
        if k.requires_grad:
            k = torch.square(torch.relu(k))
        else:
            k = torch.relu_(k).square_()
        if self.key_norm is not None:
            k = self.key_norm(k)
        return r * self.value(k)
