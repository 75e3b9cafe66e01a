"""The MAE decoder of VRWKV and VRWKV6: Vision-RWKV blocks over the full
token grid, for mmpretrain's ``MAE`` algorithm and ``MAEPretrainHead``."""
from typing import Optional

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.registry import MODELS

from ..layers import VRWKV6Block, VRWKVBlock
from ..layers.mae_init import mae_linear_init_
from ..layers.pos_embed import sincos_2d
from ..layers.sparse import MASK_MODES

BLOCKS = dict(VRWKV=VRWKVBlock, VRWKV6=VRWKV6Block)
# the dense shift of each block type, and the official MAE's 1-D one
SHIFTS = dict(VRWKV='q_shift', VRWKV6='q_shift_multihead')


@MODELS.register_module()
class VRWKVMAEDecoder(BaseModule):
    """Reconstructs every patch from the encoder's visible tokens, as
    mmpretrain's ``MAEPretrainDecoder`` does, without a class token: a
    linear map to the decoder width, a learned mask token at each removed
    position (tokens put back in raster order by ``ids_restore``), a fixed
    sine-cosine position embedding, ``depth`` VRWKV (or VRWKV6) blocks over
    the full square grid, a LayerNorm and a linear map to the pixels of a
    patch.

    The official VRWKV MAE decoder: 8 blocks of width 512 with the
    encoder's block settings (post-norm, key-norm, layer scale 1e-5 for
    VRWKV-B), and the 1-D token shift of its encoder ('official' mode); in
    'grid' mode the blocks shift as they do in a backbone (Q-Shift).

    Args:
        num_patches (int): tokens of the (square) grid. Defaults to 196.
        patch_size (int): Defaults to 16.
        in_chans (int): image channels. Defaults to 3.
        embed_dim (int): the encoder's width. Defaults to 768.
        decoder_embed_dim (int): Defaults to 512.
        decoder_depth (int): Defaults to 8.
        block (str): 'VRWKV' or 'VRWKV6' (heads of 64: the width must be a
            multiple of 64). Defaults to 'VRWKV'.
        mask_mode (str): the encoder's sparse-input mode, 'grid' or
            'official' (the 1-D shift). Defaults to 'grid'.
        post_norm (bool): Defaults to True.
        key_norm (bool): Defaults to True.
        init_values (float, optional): layer-scale init; None or 0 turns it
            off. Defaults to 1e-5.
        hidden_rate (int): Channel Mix expansion. Defaults to 4.
        drop_path_rate (float): stochastic depth, linear over the blocks.
            Defaults to 0.
        predict_feature_dim (int, optional): output features per patch;
            None: ``patch_size ** 2 * in_chans`` (pixels). Defaults to None.
        wkv_backend (str): backend of the blocks' Bi-WKV / Bi-WKV6.
            Defaults to 'auto'.
        with_cp (bool): gradient checkpointing per block. Defaults to False.
        init_cfg (dict, optional): Defaults to None.
    """

    def __init__(self,
                 num_patches: int = 196,
                 patch_size: int = 16,
                 in_chans: int = 3,
                 embed_dim: int = 768,
                 decoder_embed_dim: int = 512,
                 decoder_depth: int = 8,
                 block: str = 'VRWKV',
                 mask_mode: str = 'grid',
                 post_norm: bool = True,
                 key_norm: bool = True,
                 init_values: Optional[float] = 1e-5,
                 hidden_rate: int = 4,
                 drop_path_rate: float = 0.,
                 predict_feature_dim: Optional[int] = None,
                 wkv_backend: str = 'auto',
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg)
        if block not in BLOCKS:
            raise ValueError(f'block {block!r} is not one of: '
                             + ', '.join(BLOCKS))
        if mask_mode not in MASK_MODES:
            raise ValueError(f'mask_mode {mask_mode!r} is not one of: '
                             + ', '.join(MASK_MODES))
        side = int(round(num_patches**0.5))
        if side * side != num_patches:
            raise ValueError(f'num_patches must be a square grid, got '
                             f'{num_patches}')
        self.grid = (side, side)
        self.num_patches = num_patches
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(
            torch.zeros(1, num_patches, decoder_embed_dim),
            requires_grad=False)
        shift = 'single_shift' if mask_mode == 'official' else SHIFTS[block]
        rates = torch.linspace(0, drop_path_rate, decoder_depth,
                               device='cpu').tolist()
        options = dict(embed_dims=decoder_embed_dim,
                       num_layers=decoder_depth, shift_mode=shift,
                       hidden_rate=hidden_rate, init_values=init_values,
                       post_norm=post_norm, key_norm=key_norm,
                       with_cp=with_cp, wkv_backend=wkv_backend)
        self.decoder_blocks = nn.ModuleList([
            BLOCKS[block](layer_id=i, drop_path=rate, **options)
            for i, rate in enumerate(rates)])
        self.ln1 = nn.LayerNorm(decoder_embed_dim)
        self.decoder_pred = nn.Linear(
            decoder_embed_dim, predict_feature_dim or patch_size**2 * in_chans)

    def init_weights(self) -> None:
        """MAE's: the fixed sine-cosine position embedding, the mask token
        from N(0, 0.02), Xavier-uniform linear layers (zero biases), unit
        LayerNorms."""
        super().init_weights()
        self.decoder_pos_embed.data.copy_(
            sincos_2d(self.grid, self.decoder_pos_embed.shape[-1]))
        nn.init.normal_(self.mask_token, std=.02)
        mae_linear_init_(self)

    def forward(self, x: torch.Tensor,
                ids_restore: torch.Tensor) -> torch.Tensor:
        """x: (B, n, embed_dim) visible tokens; ids_restore: (B, L), as the
        masked backbones return them. Returns (B, L, predict_feature_dim),
        in raster order."""
        B, L = ids_restore.shape
        if L != self.num_patches:
            raise ValueError(
                f'the decoder is built for {self.num_patches} patches, the '
                f'encoder gave {L}: set num_patches = (image size / patch '
                'size) ** 2')
        x = self.decoder_embed(x)
        mask_tokens = self.mask_token.expand(B, L - x.shape[1], -1)
        x = torch.cat([x, mask_tokens.to(x.dtype)], dim=1)
        x = torch.gather(x, 1,
                         ids_restore[..., None].expand(-1, -1, x.shape[-1]))
        x = x + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x, self.grid)
        return self.decoder_pred(self.ln1(x))
