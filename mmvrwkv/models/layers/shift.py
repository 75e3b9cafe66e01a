"""Token shift functions of Vision-RWKV."""
from typing import Callable, Dict, Sequence

import torch


def q_shift(x: torch.Tensor, shift_pixel: int, gamma: float,
            patch_resolution: Sequence[int]) -> torch.Tensor:
    """Quad-directional token shift (Q-Shift).

    Four groups of ``int(C * gamma)`` channels take their value from the token
    ``shift_pixel`` to the left, right, above and below (zero outside the
    image); the remaining channels are unchanged. Works on the (B, N, C) token
    layout directly, without transposing to (B, C, H, W).

    Args:
        x (Tensor): tokens, shape (B, N, C) with N = H * W in row-major order.
        shift_pixel (int): shift distance in tokens.
        gamma (float): fraction of channels per direction, at most 1/4.
        patch_resolution (Sequence[int]): (H, W).

    Returns:
        Tensor: shifted tokens, shape (B, N, C).
    """
    B, N, C = x.shape
    H, W = patch_resolution
    # A shift of the whole grid or more leaves only zeros in that direction.
    sw, sh = min(shift_pixel, W), min(shift_pixel, H)
    g1, g2, g3, g4 = (int(C * gamma * i) for i in range(1, 5))
    src = x.reshape(B, H, W, C)
    out = torch.empty_like(src)
    # from the left / right neighbour (along W)
    out[:, :, sw:, :g1] = src[:, :, :W - sw, :g1]
    out[:, :, :sw, :g1] = 0
    out[:, :, :W - sw, g1:g2] = src[:, :, sw:, g1:g2]
    out[:, :, W - sw:, g1:g2] = 0
    # from the neighbour above / below (along H)
    out[:, sh:, :, g2:g3] = src[:, :H - sh, :, g2:g3]
    out[:, :sh, :, g2:g3] = 0
    out[:, :H - sh, :, g3:g4] = src[:, sh:, :, g3:g4]
    out[:, H - sh:, :, g3:g4] = 0
    out[..., g4:] = src[..., g4:]
    return out.reshape(B, N, C)


# Explicit lookup for the ``shift_mode`` option (the official code eval()s it).
SHIFT_FUNCS: Dict[str, Callable] = {'q_shift': q_shift}


def get_shift_func(shift_mode: str) -> Callable:
    if shift_mode not in SHIFT_FUNCS:
        raise ValueError(f'shift_mode {shift_mode!r} is not one of: '
                         + ', '.join(SHIFT_FUNCS))
    return SHIFT_FUNCS[shift_mode]
