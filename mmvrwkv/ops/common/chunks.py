"""Chunk length of the standard-operator (chunked) forms."""
import math


def default_chunk(T: int) -> int:
    """Chunk length that balances the within-chunk (N, L, L) and
    between-chunk (N, N) blocks of T = N * L tokens: ceil(sqrt(T))."""
    return max(1, math.isqrt(max(T - 1, 0)) + 1)
