"""VRWKV and VRWKV6 backbones for masked-image pre-training (MAE): drop-in
backbones of mmpretrain's ``MAE`` algorithm, as ``MAEViT`` is."""
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.registry import MODELS

from ..layers.mae_init import mae_linear_init_
from ..layers.pos_embed import sincos_2d
from ..layers.sparse import MASK_MODES, KeptTokens
from .vrwkv import VRWKV
from .vrwkv6 import VRWKV6


class MaskedPretrainMixin:
    """Masked-image pre-training for a Vision-RWKV backbone; mixed in before
    it (``class MAEVRWKV(MaskedPretrainMixin, VRWKV)``).

    ``forward(x, mask=True)`` embeds the patches, adds the fixed 2-D
    sine-cosine position embedding (once), keeps a random ``1 -
    mask_ratio`` of the tokens and runs the layers on them alone, in one of
    two sparse-input modes (``mask_mode``, see
    :mod:`mmvrwkv.models.layers.sparse`): ``'grid'`` (the visible tokens in
    raster order, Q-Shift on the image grid with removed neighbours zero,
    Bi-WKV at the true distances: what fine-tuning computes) or
    ``'official'`` (the official MAE encoder's arithmetic: the tokens in
    the shuffled order of the masking, a 1-D shift along it, Bi-WKV over
    the visible tokens as one sequence). It returns ``(latent, mask,
    ids_restore)`` as mmpretrain's ``MAEViT``: latent (B, n, C) after the
    final norm, mask (B, L) with 1 for a removed token, and ids_restore
    (B, L) such that ``gather(cat(latent_tokens, mask_tokens), 1,
    ids_restore)`` is in raster order.

    ``forward(x, mask=None)`` (or False) is the plain backbone. The
    parameters and their names are the backbone's (``layers.*``,
    ``patch_embed.*``, ``pos_embed``, ``ln1.*``), so a classifier, detector
    or segmentor config loads the pre-trained encoder with
    ``init_cfg=dict(type='Pretrained', prefix='backbone.')``.

    Args:
        mask_ratio (float): fraction of the tokens removed, in [0, 1).
            Defaults to 0.75.
        mask_mode (str): 'grid' or 'official'. Defaults to 'grid'.
        **kwargs: the backbone's arguments (arch, img_size, patch_size,
            drop_path_rate, wkv_backend, ...). ``out_type`` defaults to
            'raw' and ``out_indices`` to the last layer, as ``MAEViT``'s.
    """

    def __init__(self,
                 *args,
                 mask_ratio: float = 0.75,
                 mask_mode: str = 'grid',
                 out_type: str = 'raw',
                 **kwargs):
        if not 0 <= mask_ratio < 1:
            raise ValueError(f'mask_ratio must be in [0, 1), got '
                             f'{mask_ratio}: it is the fraction of the '
                             'patches removed')
        if mask_mode not in MASK_MODES:
            raise ValueError(f'mask_mode {mask_mode!r} is not one of: '
                             + ', '.join(MASK_MODES))
        super().__init__(*args, out_type=out_type, **kwargs)
        self.mask_ratio = mask_ratio
        self.mask_mode = mask_mode
        # MAE's fixed position embedding (init_weights fills it)
        self.pos_embed.requires_grad = False

    def init_weights(self) -> None:
        """MAE's initialisation (the official VRWKV MAE's): the fixed
        sine-cosine position embedding, Xavier-uniform patch embedding and
        linear layers (zero biases), unit LayerNorms; then the init_cfg, if
        any (a checkpoint to continue from)."""
        self.pos_embed.data.copy_(sincos_2d(self.patch_resolution,
                                            self.embed_dims))
        w = self.patch_embed.projection.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        mae_linear_init_(self.layers)
        super().init_weights()

    def random_masking(self, B: int, L: int, device: torch.device
                       ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A random subset of ``int(L * (1 - mask_ratio))`` tokens per
        image (MAE's argsort of uniform noise).

        Returns:
            tuple: ids_keep (B, n), the kept tokens in the order the layers
            see them (shuffled in 'official' mode, raster order in 'grid'
            mode); mask (B, L), 1 where removed; ids_restore (B, L), the
            position in ``cat(kept in that order, removed)`` of each grid
            token.
        """
        n = int(L * (1 - self.mask_ratio))
        noise = torch.rand(B, L, device=device)
        ids_shuffle = torch.argsort(noise, dim=1)
        if self.mask_mode == 'grid':
            ids_shuffle = torch.cat([ids_shuffle[:, :n].sort(dim=1).values,
                                     ids_shuffle[:, n:]], dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        mask = torch.ones(B, L, device=device)
        mask[:, :n] = 0
        mask = torch.gather(mask, 1, ids_restore)
        return ids_shuffle[:, :n], mask, ids_restore

    def forward(self, x: torch.Tensor, mask: Optional[bool] = True
                ) -> Union[Tuple[torch.Tensor, ...], Tuple[torch.Tensor,
                                                           torch.Tensor,
                                                           torch.Tensor]]:
        """x: (B, in_channels, H, W) images. With ``mask`` (the default),
        ``(latent, mask, ids_restore)``; with None or False, the plain
        backbone's outputs."""
        if mask is None or mask is False:
            return super().forward(x)
        self._check_masked_input(x)
        B = x.shape[0]
        x, grid = self._embed(x)
        ids_keep, removed, ids_restore = self.random_masking(
            B, x.shape[1], x.device)
        x = torch.gather(x, 1,
                         ids_keep[..., None].expand(-1, -1, x.shape[-1]))
        kept = KeptTokens(tuple(grid), ids_keep, self.mask_mode)
        for i, layer in enumerate(self.layers):
            x = layer(x, kept)
            if i == self.num_layers - 1 and self.final_norm:
                x = self.ln1(x)
        return x, removed, ids_restore

    def _check_masked_input(self, x: torch.Tensor) -> None:
        """The reconstruction target (mmpretrain's ``MAEPretrainHead``) is
        the image cut into patches of a square grid."""
        self._check_images(x, self.patch_size, 'one patch')
        h, w = x.shape[-2:]
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(
                f'{type(self).__name__}: masked pre-training needs image '
                f'sides that are multiples of the patch size {p}, got '
                f'{h}x{w}: '
                f'crop or resize to e.g. {h - h % p or p}x{w - w % p or p}')
        if h != w:
            raise ValueError(
                f'{type(self).__name__}: masked pre-training needs square '
                f'images (the decoder and MAEPretrainHead read the grid from '
                f'the token count), got {h}x{w}: crop to squares, e.g. '
                'RandomResizedCrop(scale=224)')


@MODELS.register_module()
class MAEVRWKV(MaskedPretrainMixin, VRWKV):
    """VRWKV for MAE pre-training (:class:`MaskedPretrainMixin`); the
    arguments of :class:`VRWKV` plus ``mask_ratio`` and ``mask_mode``."""


@MODELS.register_module()
class MAEVRWKV6(MaskedPretrainMixin, VRWKV6):
    """VRWKV6 for MAE pre-training (:class:`MaskedPretrainMixin`); the
    arguments of :class:`VRWKV6` plus ``mask_ratio`` and ``mask_mode``.
    There is no official VRWKV6 MAE: its 'official' mode is VRWKV's
    (1-D shift of all channels along the shuffled tokens, Bi-WKV6 over
    them as one sequence)."""
