"""Token shift functions of Vision-RWKV."""
from typing import Callable, Dict, Sequence

import torch
import torch.nn.functional as F

from mmvrwkv.ops.common import in_onnx_export
from .sparse import single_shift


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
    groups = [int(C * gamma * i) for i in range(5)]
    return _quad_shift(x.reshape(B, H, W, C), shift_pixel,
                       groups).reshape(B, N, C)


def q_shift_multihead(x: torch.Tensor, shift_pixel: int, gamma: float,
                      patch_resolution: Sequence[int],
                      head_dim: int = 64) -> torch.Tensor:
    """Q-Shift within each head (VRWKV6's ``q_shift_multihead``).

    As :func:`q_shift`, but the four direction groups are taken in every
    head of ``head_dim`` channels: channels ``[0, g)`` of each head come
    from the left, ``[g, 2g)`` from the right, ``[2g, 3g)`` from above and
    ``[3g, 4g)`` from below, ``g = int(head_dim * gamma)``. With gamma 1/4
    (VRWKV6) every channel is shifted.

    Args:
        x (Tensor): tokens, shape (B, N, C), C a multiple of ``head_dim``.
        shift_pixel (int): shift distance in tokens.
        gamma (float): fraction of each head's channels per direction.
        patch_resolution (Sequence[int]): (H, W).
        head_dim (int): channels per head. Defaults to 64.

    Returns:
        Tensor: shifted tokens, shape (B, N, C).
    """
    src, groups = multihead_layout(x, gamma, patch_resolution, head_dim)
    return _quad_shift(src, shift_pixel, groups).reshape(x.shape)


def multihead_layout(x: torch.Tensor, gamma: float,
                     patch_resolution: Sequence[int], head_dim: int):
    """(B, N, C) tokens as (B, H, W, heads, head_dim), and the channel
    bounds of the four direction groups within a head (what
    :func:`q_shift_multihead` shifts)."""
    B, N, C = x.shape
    H, W = patch_resolution
    if C % head_dim:
        raise ValueError(f'q_shift_multihead: {C} channels are not a whole '
                         f'number of heads of {head_dim}')
    groups = [int(head_dim * gamma * i) for i in range(5)]
    return x.reshape(B, H, W, C // head_dim, head_dim), groups


def _quad_shift(src: torch.Tensor, shift_pixel: int,
                groups: Sequence[int]) -> torch.Tensor:
    """Shift the channel groups ``groups[0]:groups[1]``, ... of
    ``src`` (B, H, W, ..., c) from the left, right, above and below (zeros
    outside the image); channels from ``groups[4]`` on are kept.

    Two forms of the same values: assignments into an empty tensor (eager:
    one pass over the data), and, while ``torch.onnx.export`` traces the
    model, slices, zero padding and one concatenation: exported, each slice
    assignment becomes a ScatterND with its own index arithmetic (about 700
    ONNX nodes per block, which also takes the ONNX optimiser minutes), the
    padded form 9 Slice/Pad nodes and a Concat. The padded form copies the
    data twice (1.7-2.7x the assignment form's time in eager at 4096 tokens
    on a CPU), so eager keeps the assignments."""
    H, W = src.shape[1:3]
    # A shift of the whole grid or more leaves only zeros in that direction.
    sw, sh = min(shift_pixel, W), min(shift_pixel, H)
    if in_onnx_export():
        return _padded_quad_shift(src, sw, sh, groups)
    g0, g1, g2, g3, g4 = groups
    out = torch.empty_like(src)
    # from the left / right neighbour (along W)
    out[:, :, sw:, ..., g0:g1] = src[:, :, :W - sw, ..., g0:g1]
    out[:, :, :sw, ..., g0:g1] = 0
    out[:, :, :W - sw, ..., g1:g2] = src[:, :, sw:, ..., g1:g2]
    out[:, :, W - sw:, ..., g1:g2] = 0
    # from the neighbour above / below (along H)
    out[:, sh:, :, ..., g2:g3] = src[:, :H - sh, :, ..., g2:g3]
    out[:, :sh, :, ..., g2:g3] = 0
    out[:, :H - sh, :, ..., g3:g4] = src[:, sh:, :, ..., g3:g4]
    out[:, H - sh:, :, ..., g3:g4] = 0
    out[..., g4:] = src[..., g4:]
    return out


def _padded_quad_shift(src: torch.Tensor, sw: int, sh: int,
                       groups: Sequence[int]) -> torch.Tensor:
    """:func:`_quad_shift` from slices, zero padding and a concatenation
    (``sw``, ``sh``: the shifts along W and H, at most W and H)."""
    H, W = src.shape[1:3]
    g0, g1, g2, g3, g4 = groups
    keep = (0, 0) * (src.dim() - 3)  # the dims after W, channels included
    parts = [
        F.pad(src[:, :, :W - sw, ..., g0:g1], keep + (sw, 0)),  # left
        F.pad(src[:, :, sw:, ..., g1:g2], keep + (0, sw)),  # right
        F.pad(src[:, :H - sh, :, ..., g2:g3], keep + (0, 0, sh, 0)),  # above
        F.pad(src[:, sh:, :, ..., g3:g4], keep + (0, 0, 0, sh)),  # below
        src[..., g4:],
    ]
    return torch.cat(parts, dim=-1)


# Explicit lookup for the ``shift_mode`` option (the official code eval()s it).
SHIFT_FUNCS: Dict[str, Callable] = {
    'q_shift': q_shift,
    'q_shift_multihead': q_shift_multihead,
    # the official MAE's 1-D shift along the sequence (sparse.single_shift)
    'single_shift': single_shift,
}


def get_shift_func(shift_mode: str) -> Callable:
    if shift_mode not in SHIFT_FUNCS:
        raise ValueError(f'shift_mode {shift_mode!r} is not one of: '
                         + ', '.join(SHIFT_FUNCS))
    return SHIFT_FUNCS[shift_mode]
