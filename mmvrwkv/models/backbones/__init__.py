from .vrwkv import VRWKV, resize_pos_embed
from .vrwkv_adapter import VRWKVAdapter

__all__ = ['VRWKV', 'VRWKVAdapter', 'resize_pos_embed']
