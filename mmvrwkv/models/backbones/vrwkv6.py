"""The VRWKV6 backbone: Vision-RWKV with RWKV-6 token mixing."""
from typing import Dict, Optional, Sequence, Union

from mmengine.registry import MODELS

from ..layers import VRWKV6Block
from ..layers.spatial_mix_v6 import HEAD_SIZE
from .base_vrwkv import VisionRWKVBase


@MODELS.register_module()
class VRWKV6(VisionRWKVBase):
    """VRWKV6, the official Vision-RWKV repository's RWKV-6 model.

    VRWKV with the Spatial Mix of RWKV-6: data-dependent token shift and
    per-token decay from low-rank projections, Bi-WKV6 (a forward and a
    reverse RWKV-6 scan) over heads of 64 channels with a GroupNorm per
    head and a SiLU gate; the token shift is Q-Shift within each head.
    Parameter names follow the official ``VRWKV6``, so its checkpoints
    (``vrwkv6_{t,s,b}_in1k_224.pth``) load with at most a prefix change.

    Args:
        arch (str | dict): 'tiny'/'t', 'small'/'s', 'base'/'b', or a dict
            with ``embed_dims`` (a multiple of 64; heads are
            ``embed_dims // 64``) and ``num_layers`` and optionally
            ``post_norm``, ``key_norm``, ``init_values``, ``hidden_rate``.
            Defaults to 'tiny'.
        img_size (int | tuple): size the position embedding is made for
            (other sizes are interpolated). Defaults to 224.
        patch_size (int): Defaults to 16.
        in_channels (int): Defaults to 3.
        out_indices (int | Sequence[int]): layers whose outputs are returned;
            negative values count from the end. Defaults to -1.
        drop_rate (float): dropout after the position embedding.
            Defaults to 0.
        drop_path_rate (float): stochastic depth, linearly increasing with
            depth up to this value. Defaults to 0.
        shift_pixel (int): token shift distance, at least 1. Defaults to 1.
        shift_mode (str): token shift, 'q_shift_multihead' (the official
            one) or 'q_shift'. Defaults to 'q_shift_multihead'.
        post_norm (bool, optional): override the arch's post-norm setting.
        key_norm (bool, optional): override the arch's key-norm setting.
        init_values (float, optional): override the arch's layer-scale init.
        hidden_rate (int, optional): override the arch's Channel Mix
            expansion.
        final_norm (bool): LayerNorm (``ln1``) after the last layer.
            Defaults to True.
        interpolate_mode (str): position-embedding interpolation.
            Defaults to 'bicubic'.
        out_type (str): 'featmap' (B, C, H, W), 'raw' (B, N, C) or
            'avg_featmap' (B, C), the mean token. Defaults to 'featmap'.
        frozen_stages (int): freeze the embeddings (>= 0) and the first
            ``frozen_stages`` layers. Defaults to -1 (nothing frozen).
        with_cp (bool): gradient checkpointing per layer. Defaults to False.
        init_cfg (dict | list, optional): mmengine initialisation config.
    """
    # classification/configs/vrwkv6/vrwkv6_{tiny,small,base}_*_in1k.py
    arch_zoo: Dict[str, dict] = {
        **dict.fromkeys(['t', 'tiny'], {
            'embed_dims': 192, 'num_layers': 12, 'post_norm': False,
            'key_norm': False, 'init_values': None, 'hidden_rate': 4}),
        **dict.fromkeys(['s', 'small'], {
            'embed_dims': 384, 'num_layers': 12, 'post_norm': True,
            'key_norm': False, 'init_values': 1e-5, 'hidden_rate': 4}),
        **dict.fromkeys(['b', 'base'], {
            'embed_dims': 768, 'num_layers': 12, 'post_norm': True,
            'key_norm': False, 'init_values': 1e-5, 'hidden_rate': 4}),
    }
    head_size = HEAD_SIZE

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 img_size: Union[int, Sequence[int]] = 224,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = -1,
                 drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 shift_pixel: int = 1,
                 shift_mode: str = 'q_shift_multihead',
                 post_norm: Optional[bool] = None,
                 key_norm: Optional[bool] = None,
                 init_values: Optional[float] = None,
                 hidden_rate: Optional[int] = None,
                 final_norm: bool = True,
                 interpolate_mode: str = 'bicubic',
                 out_type: str = 'featmap',
                 frozen_stages: int = -1,
                 with_cp: bool = False,
                 init_cfg: Optional[Union[dict, list]] = None):
        if shift_pixel < 1:
            raise ValueError(f'shift_pixel must be >= 1, got {shift_pixel}')
        super().__init__(
            arch,
            dict(post_norm=post_norm, key_norm=key_norm,
                 init_values=init_values, hidden_rate=hidden_rate),
            img_size, patch_size, in_channels, out_indices, drop_rate,
            interpolate_mode, out_type, frozen_stages, init_cfg)
        if self.embed_dims % self.head_size:
            raise ValueError(
                f'VRWKV6 uses heads of {self.head_size} channels: embed_dims '
                f'must be a multiple of {self.head_size}, got '
                f'{self.embed_dims}')
        self.num_heads = self.embed_dims // self.head_size
        dpr = self._drop_path_rates(drop_path_rate)
        self._add_layers([
            VRWKV6Block(
                embed_dims=self.embed_dims,
                num_layers=self.num_layers,
                layer_id=i,
                shift_mode=shift_mode,
                shift_pixel=shift_pixel,
                drop_path=dpr[i],
                hidden_rate=self.arch_settings['hidden_rate'],
                init_values=self.arch_settings['init_values'],
                post_norm=self.arch_settings['post_norm'],
                key_norm=self.arch_settings['key_norm'],
                with_cp=with_cp) for i in range(self.num_layers)
        ], final_norm)
