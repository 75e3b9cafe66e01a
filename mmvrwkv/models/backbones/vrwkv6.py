"""The VRWKV6 backbone: Vision-RWKV with RWKV-6 token mixing."""
from typing import Dict, Union

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
            (see :class:`VisionRWKVBase`) whose ``embed_dims`` is a
            multiple of 64 (heads are ``embed_dims // 64``).
            Defaults to 'tiny'.
        shift_pixel (int): token shift distance, at least 1. Defaults to 1.
        shift_mode (str): token shift, 'q_shift_multihead' (the official
            one) or 'q_shift'. Defaults to 'q_shift_multihead'.
        **kwargs: the backbone contract, :class:`VisionRWKVBase`'s arguments
            (img_size, out_indices, drop_path_rate, init_values, out_type,
            frozen_stages, with_cp, wkv_backend, init_cfg, ...).
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
                 shift_pixel: int = 1,
                 shift_mode: str = 'q_shift_multihead',
                 **kwargs):
        if shift_pixel < 1:
            raise ValueError(f'shift_pixel must be >= 1, got {shift_pixel}')
        super().__init__(arch=arch, **kwargs)
        if self.embed_dims % self.head_size:
            raise ValueError(
                f'VRWKV6 uses heads of {self.head_size} channels: embed_dims '
                f'must be a multiple of {self.head_size}, got '
                f'{self.embed_dims}')
        self.num_heads = self.embed_dims // self.head_size
        settings = self.arch_settings
        self._build_layers(lambda i, drop_path: VRWKV6Block(
            embed_dims=self.embed_dims,
            num_layers=self.num_layers,
            layer_id=i,
            shift_mode=shift_mode,
            shift_pixel=shift_pixel,
            drop_path=drop_path,
            hidden_rate=settings['hidden_rate'],
            init_values=settings['init_values'],
            post_norm=settings['post_norm'],
            key_norm=settings['key_norm'],
            with_cp=self.with_cp,
            wkv_backend=self.wkv_backend))
