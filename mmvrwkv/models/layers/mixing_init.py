"""Initial values of the per-channel mixing parameters (``init_mode``)."""
import math
from typing import Dict

import torch

INIT_MODES = ('fancy', 'local', 'global')


def _ramp(channels: int) -> torch.Tensor:
    return torch.arange(channels, dtype=torch.float32).div(channels).view(
        1, 1, channels)


def _ratios(layer_id: int, num_layers: int):
    ratio_0_to_1 = layer_id / (num_layers - 1) if num_layers > 1 else 0.
    ratio_1_to_almost0 = 1.0 - layer_id / num_layers
    return ratio_0_to_1, ratio_1_to_almost0


def check_init_mode(init_mode: str) -> None:
    if init_mode not in INIT_MODES:
        raise ValueError(f'init_mode {init_mode!r} is not one of: '
                         + ', '.join(INIT_MODES))


def spatial_mix_init(init_mode: str, channels: int, layer_id: int,
                     num_layers: int) -> Dict[str, torch.Tensor]:
    """Values of spatial_decay, spatial_first (C,) and spatial_mix_{k,v,r}
    (1, 1, C), as the official Vision-RWKV initialisation."""
    check_init_mode(init_mode)
    if init_mode == 'local':
        ones = torch.ones(channels)
        return dict(spatial_decay=ones, spatial_first=ones.clone(),
                    **{f'spatial_mix_{n}': torch.ones(1, 1, channels)
                       for n in 'kvr'})
    if init_mode == 'global':
        return dict(spatial_decay=torch.zeros(channels),
                    spatial_first=torch.zeros(channels),
                    **{f'spatial_mix_{n}': torch.full((1, 1, channels), 0.5)
                       for n in 'kvr'})
    r01, r10 = _ratios(layer_id, num_layers)
    h = torch.arange(channels, dtype=torch.float32) / max(channels - 1, 1)
    decay = -5 + 8 * h.pow(0.7 + 1.3 * r01)
    zigzag = (torch.tensor([(i + 1) % 3 - 1 for i in range(channels)],
                           dtype=torch.float32) * 0.5)
    first = torch.ones(channels) * math.log(0.3) + zigzag
    x = _ramp(channels)
    return dict(
        spatial_decay=decay,
        spatial_first=first,
        spatial_mix_k=x.pow(r10),
        spatial_mix_v=x.pow(r10) + 0.3 * r01,
        spatial_mix_r=x.pow(0.5 * r10))


def channel_mix_init(init_mode: str, channels: int, layer_id: int,
                     num_layers: int) -> Dict[str, torch.Tensor]:
    """Values of spatial_mix_{k,r} (1, 1, C) of the channel mix."""
    check_init_mode(init_mode)
    if init_mode == 'local':
        return {f'spatial_mix_{n}': torch.ones(1, 1, channels) for n in 'kr'}
    if init_mode == 'global':
        return {f'spatial_mix_{n}': torch.full((1, 1, channels), 0.5)
                for n in 'kr'}
    _, r10 = _ratios(layer_id, num_layers)
    x = _ramp(channels)
    return dict(spatial_mix_k=x.pow(r10), spatial_mix_r=x.pow(r10))


def spatial_mix_v6_init(channels: int, num_heads: int, layer_id: int,
                        num_layers: int) -> Dict[str, torch.Tensor]:
    """The official VRWKV6 ('fancy') initial values of the Spatial Mix's
    per-channel parameters: time_maa_{x,w,k,v,r,g} (1, 1, C), time_decay
    (1, 1, C) and time_faaaa (heads, C // heads). (The low-rank matrices
    start uniform in +-1e-4, see :class:`SpatialMixV6`.)"""
    r01, r10 = _ratios(layer_id, num_layers)
    x = _ramp(channels)
    shift_kw = 1.0 - x.pow(r10)
    shift_rg = 1.0 - x.pow(0.5 * r10)
    h = torch.arange(channels, dtype=torch.float32) / max(channels - 1, 1)
    decay = -6 + 5 * h.pow(0.7 + 1.3 * r01)
    zigzag = torch.tensor([(i + 1) % 3 - 1 for i in range(channels)],
                          dtype=torch.float32) * 0.1
    return dict(
        time_maa_x=shift_kw,
        time_maa_w=shift_kw.clone(),
        time_maa_k=shift_kw.clone(),
        time_maa_v=1.0 - (x.pow(r10) + 0.3 * r01),
        time_maa_r=shift_rg,
        time_maa_g=shift_rg.clone(),
        time_decay=decay.view(1, 1, channels),
        time_faaaa=(r01 * (1 - h) + zigzag).view(num_heads, -1))
