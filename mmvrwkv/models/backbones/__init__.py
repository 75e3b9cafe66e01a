from .vrwkv import VRWKV, resize_pos_embed

__all__ = ['VRWKV', 'resize_pos_embed']
