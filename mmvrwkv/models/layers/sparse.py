"""Layers on sparse inputs: the visible tokens of a masked image (MAE
pre-training), and the two ways the token mixing treats them.

A layer normally gets the (H, W) grid of its (B, H * W, C) tokens. In masked
pre-training it gets a :class:`KeptTokens` instead: the grid, where each of
its n < H * W tokens sits in it, and the sparse-input mode:

* ``'official'``: the official MAE encoder's arithmetic
  (OpenGVLab/Vision-RWKV ``classification/mae``). The tokens come in the
  order of the random masking; the token shift is a 1-D shift of all
  channels by one place along that sequence (:func:`single_shift`); Bi-WKV
  (Bi-WKV6) runs over the n tokens as a sequence, Bi-WKV's decay and bonus
  divided by n.
* ``'grid'``: pre-training computes what fine-tuning computes, restricted
  to the visible tokens. The tokens come in raster order; the shift is the
  layer's own (Q-Shift) on the H x W grid with removed neighbours giving
  zeros (one gather on the visible tokens, its indices made once per
  batch); Bi-WKV decays by the true distance between visible tokens, its
  decay and bonus divided by H * W as for the full image. Exactly, through
  the operator on the full grid: removed tokens take keys of
  :data:`MASKED_KEY`, whose weight ``exp(MASKED_KEY - max)`` is 0 in every
  float type, so each visible token sums the visible ones only, each at its
  true distance. Bi-WKV6 likewise: removed tokens have r = k = v = 0 and
  decay the state by the layer's data-independent decay
  ``exp(-exp(time_decay))``, one step per grid position, as distance. The
  operators run on H * W tokens (O(H W C) for Bi-WKV, negligible beside the
  projections on n tokens; O(H W C N) for Bi-WKV6).

Neither mode lets a removed token's pixels reach the visible ones: they are
never embedded (the backbone gathers the visible patches first), and what
stands in for them is a constant.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

MASK_MODES = ('official', 'grid')
# a key whose weight underflows to exactly 0 beside any real key (|k| and the
# decay terms stay orders of magnitude smaller), finite in float16
MASKED_KEY = -1e4


@dataclass(frozen=True)
class KeptTokens:
    """Where the tokens of a sparse sequence sit in their image's grid.

    Attributes:
        grid (tuple[int, int]): (H, W) of the full token grid.
        index (Tensor): (B, n) long, the raster position (row * W + col) in
            the grid of each token of the sequence, in sequence order.
        mode (str): 'official' or 'grid' (module docstring).
    """
    grid: Tuple[int, int]
    index: torch.Tensor
    mode: str
    # the gather indices of grid-mode shifts, made once per image batch
    # and shared by the layers (:func:`shift_tokens`)
    _shift_indices: Dict[tuple, torch.Tensor] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    @property
    def size(self) -> int:
        """H * W, the number of tokens of the full grid."""
        return self.grid[0] * self.grid[1]


Layout = Union[Sequence[int], KeptTokens]


def scatter_to_grid(x: torch.Tensor, kept: KeptTokens,
                    fill: Union[float, torch.Tensor] = 0.) -> torch.Tensor:
    """(B, n, C) tokens -> (B, H * W, C), ``fill`` (a number, or a tensor
    broadcastable to (B, H * W, C)) where no token is. Differentiable in
    ``x`` (and a tensor ``fill``)."""
    B, _, C = x.shape
    base = torch.as_tensor(fill, dtype=x.dtype, device=x.device).expand(
        B, kept.size, C)
    return base.scatter(1, kept.index[..., None].expand(-1, -1, C), x)


def gather_from_grid(full: torch.Tensor, kept: KeptTokens) -> torch.Tensor:
    """(B, H * W, C) -> the (B, n, C) tokens at ``kept``'s positions."""
    index = kept.index[..., None].expand(-1, -1, full.shape[-1])
    return full.gather(1, index)


def single_shift(x: torch.Tensor, shift_pixel: int = 1, *args
                 ) -> torch.Tensor:
    """The official MAE encoder's token shift: every channel of token n
    takes token n - shift_pixel's values along the sequence, the first
    ``shift_pixel`` tokens zeros (``*args``: a shift function's gamma and
    grid, unused)."""
    return F.pad(x, (0, 0, shift_pixel, 0))[:, :x.shape[1]]


def shift_tokens(shift_func: Callable, x: torch.Tensor, shift_pixel: int,
                 gamma: float, layout: Layout) -> torch.Tensor:
    """``shift_func(x, shift_pixel, gamma, grid)`` for a dense grid, and its
    sparse-input form for :class:`KeptTokens` (:func:`single_shift` in
    'official' mode; on the grid, removed neighbours zero, in 'grid'
    mode)."""
    if not isinstance(layout, KeptTokens):
        return shift_func(x, shift_pixel, gamma, layout)
    if layout.mode == 'official':
        return single_shift(x, shift_pixel)
    index = _shift_index(shift_func, shift_pixel, gamma, layout, x.shape[-1])
    return F.pad(x, (0, 0, 1, 0)).gather(1, index)


def _shift_index(shift_func: Callable, shift_pixel: int, gamma: float,
                 kept: KeptTokens, channels: int) -> torch.Tensor:
    """(B, n, C) indices such that ``pad(x)[b, index[b, i, c], c]``, with
    a zero token prepended to x, is the grid shift of the visible tokens:
    ``gather(shift_func(scatter_to_grid(x)), kept)``, computed on n tokens
    instead of H * W.

    A token shift moves each channel's values between grid positions (or
    brings in zeros), so shifting the grid of sequence positions (1 + the
    token's place in the sequence, 0 where removed) tells, for every
    visible token and channel, which token's value arrives (0: none). Made
    once per batch and kept in ``kept``."""
    key = (shift_func, shift_pixel, gamma, channels)
    if key not in kept._shift_indices:
        B, n = kept.index.shape
        place = torch.arange(1, n + 1, dtype=torch.float32,
                             device=kept.index.device)
        place = place.expand(B, n)[..., None].expand(-1, -1, channels)
        moved = shift_func(scatter_to_grid(place, kept), shift_pixel, gamma,
                           kept.grid)
        kept._shift_indices[key] = gather_from_grid(moved, kept).long()
    return kept._shift_indices[key]


def on_full_grid(layout: Layout) -> bool:
    """Whether the token mixing runs on the full grid ('grid' mode)."""
    return isinstance(layout, KeptTokens) and layout.mode == 'grid'
