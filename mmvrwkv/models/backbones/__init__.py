from .vrwkv import VRWKV, resize_pos_embed
from .vrwkv6 import VRWKV6
from .vrwkv_adapter import VRWKVAdapter

__all__ = ['VRWKV', 'VRWKVAdapter', 'VRWKV6', 'resize_pos_embed']
