"""The Vision-RWKV backbone."""
from typing import Dict, Union

from mmengine.registry import MODELS

from ..layers import VRWKVBlock
from .base_vrwkv import VisionRWKVBase, resize_pos_embed

__all__ = ['VRWKV', 'resize_pos_embed']


@MODELS.register_module()
class VRWKV(VisionRWKVBase):
    """Vision-RWKV (Duan et al., ICLR 2025).

    A ViT-shaped backbone whose attention is Bi-WKV (linear in the number of
    tokens) with quad-directional token shift. Parameter names follow the
    official implementation, so its checkpoints load with at most a prefix
    change.

    Args:
        arch (str | dict): 'tiny'/'t', 'small'/'s', 'base'/'b', 'large'/'l',
            or a dict (see :class:`VisionRWKVBase`). Defaults to 'tiny'.
        channel_gamma (float): channel fraction per shift direction, in
            [0, 1/4]. Defaults to 1/4.
        shift_pixel (int): token shift distance. Defaults to 1.
        shift_mode (str): token shift, 'q_shift'. Defaults to 'q_shift'.
        init_mode (str): 'fancy', 'local' or 'global'. Defaults to 'fancy'.
        **kwargs: the backbone contract, :class:`VisionRWKVBase`'s arguments
            (img_size, out_indices, drop_path_rate, init_values, out_type,
            frozen_stages, with_cp, wkv_backend, init_cfg, ...).
    """
    arch_zoo: Dict[str, dict] = {
        **dict.fromkeys(['t', 'tiny'], {
            'embed_dims': 192, 'num_layers': 12, 'post_norm': False,
            'key_norm': False, 'init_values': None, 'hidden_rate': 4}),
        **dict.fromkeys(['s', 'small'], {
            'embed_dims': 384, 'num_layers': 12, 'post_norm': True,
            'key_norm': False, 'init_values': 1.0, 'hidden_rate': 4}),
        **dict.fromkeys(['b', 'base'], {
            'embed_dims': 768, 'num_layers': 12, 'post_norm': True,
            'key_norm': False, 'init_values': 1e-5, 'hidden_rate': 4}),
        **dict.fromkeys(['l', 'large'], {
            'embed_dims': 1024, 'num_layers': 24, 'post_norm': True,
            'key_norm': True, 'init_values': 1e-5, 'hidden_rate': 4}),
    }

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 channel_gamma: float = 1 / 4,
                 shift_pixel: int = 1,
                 shift_mode: str = 'q_shift',
                 init_mode: str = 'fancy',
                 **kwargs):
        if not 0 <= channel_gamma <= 1 / 4:
            raise ValueError(f'channel_gamma must be in [0, 1/4], got '
                             f'{channel_gamma}')
        super().__init__(arch=arch, **kwargs)
        settings = self.arch_settings
        self._build_layers(lambda i, drop_path: VRWKVBlock(
            embed_dims=self.embed_dims,
            num_layers=self.num_layers,
            layer_id=i,
            shift_mode=shift_mode,
            channel_gamma=channel_gamma,
            shift_pixel=shift_pixel,
            drop_path=drop_path,
            hidden_rate=settings['hidden_rate'],
            init_mode=init_mode,
            init_values=settings['init_values'],
            post_norm=settings['post_norm'],
            key_norm=settings['key_norm'],
            with_cp=self.with_cp,
            wkv_backend=self.wkv_backend))
