"""Fixed 2-D sine-cosine position embedding (MAE's)."""
from typing import Sequence

import torch


def sincos_2d(grid: Sequence[int], dims: int,
              temperature: float = 10000.) -> torch.Tensor:
    """The 2-D sine-cosine embedding of an (h, w) grid, (1, h * w, dims) in
    raster order: ``[sin(x o), cos(x o), sin(y o), cos(y o)]`` with x the
    column, y the row and ``o = temperature^(-i / (dims / 4))``, i < dims
    / 4, the layout of MAE's (and the official VRWKV MAE's)
    ``get_2d_sincos_pos_embed``.

    Raises:
        ValueError: ``dims`` is not a multiple of 4.
    """
    if dims % 4:
        raise ValueError(f'a 2-D sine-cosine embedding needs dims divisible '
                         f'by 4, got {dims}')
    h, w = grid
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                          torch.arange(w, dtype=torch.float32),
                          indexing='ij')
    omega = temperature**(-torch.arange(dims // 4, dtype=torch.float32) /
                          (dims // 4))
    parts = []
    for coord in (x.reshape(-1), y.reshape(-1)):
        angle = coord[:, None] * omega[None]
        parts += [angle.sin(), angle.cos()]
    return torch.cat(parts, dim=1)[None]
