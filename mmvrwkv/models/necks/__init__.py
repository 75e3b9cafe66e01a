from .mae_decoder import VRWKVMAEDecoder

__all__ = ['VRWKVMAEDecoder']
