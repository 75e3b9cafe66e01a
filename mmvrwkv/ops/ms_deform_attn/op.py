"""The multi-scale deformable attention operator's entry point: input
checks and the choice of backend. The adapters' deformable attention
(``mmvrwkv.models.backbones.deform_attn``) calls only
:func:`ms_deform_attn`."""
from typing import Tuple

import torch

from ..common.dispatch import Backend, Dispatcher
from ..common.library import check_floating_tensors, check_one_device
from .library import mmcv_unsupported, ms_deform_attn_compiled
from .reference import Shapes, ms_deform_attn_reference

# 'compiled': mmcv's CUDA kernels as torch.ops.mmvrwkv.ms_deform_attn;
# 'reference': grid_sample, every device, ONNX export (GridSample)
MS_DEFORM_ATTN_BACKENDS = Dispatcher(
    'ms_deform_attn', {
        'compiled': Backend(ms_deform_attn_compiled, mmcv_unsupported,
                            exportable=False),
        'reference': Backend(ms_deform_attn_reference),
    },
    preferred=('compiled', ),
    fallback='reference',
    argument='deform_attn_backend',
    # the reference is what mmcv's own module runs off CUDA
    warn_fallback=False)


def _check(value, shapes, sampling_locations, attention_weights):
    names = ('value', 'sampling_locations', 'attention_weights')
    tensors = (value, sampling_locations, attention_weights)
    check_floating_tensors('ms_deform_attn', names, tensors)
    if value.dim() != 4:
        raise ValueError('ms_deform_attn: value must have shape (B, S, '
                         f'heads, D), got {tuple(value.shape)}')
    B, S, heads = value.shape[:3]
    levels = len(shapes)
    if sampling_locations.dim() != 6 or \
            sampling_locations.shape[0] != B or \
            sampling_locations.shape[2] != heads or \
            sampling_locations.shape[3] != levels or \
            sampling_locations.shape[5] != 2:
        raise ValueError(
            'ms_deform_attn: sampling_locations must have shape (B, Q, '
            f'heads, levels, points, 2) = ({B}, Q, {heads}, {levels}, '
            f'points, 2), got {tuple(sampling_locations.shape)}')
    if attention_weights.shape != sampling_locations.shape[:5]:
        raise ValueError(
            'ms_deform_attn: attention_weights must have shape '
            f'{tuple(sampling_locations.shape[:5])} (sampling_locations '
            f'without the last dim), got {tuple(attention_weights.shape)}')
    if not torch.compiler.is_compiling() and \
            sum(h * w for h, w in shapes) != S:
        raise ValueError(
            f'ms_deform_attn: the level shapes {list(shapes)} hold '
            f'{sum(h * w for h, w in shapes)} pixels, value has {S}')
    check_one_device('ms_deform_attn', names, tensors)


def ms_deform_attn(value: torch.Tensor,
                   shapes: Shapes,
                   sampling_locations: torch.Tensor,
                   attention_weights: torch.Tensor,
                   backend: str = 'auto') -> torch.Tensor:
    """Multi-scale deformable sampling: each query's heads sample every
    level at a few points and sum the samples with their weights.

    Args:
        value (Tensor): (B, S, heads, D), the levels' pixels row-major one
            after the other, S = sum(h * w).
        shapes (Sequence[tuple[int, int]]): (h, w) of each level (ints,
            symbolic under export).
        sampling_locations (Tensor): (B, Q, heads, levels, points, 2),
            (x, y) in [0, 1].
        attention_weights (Tensor): (B, Q, heads, levels, points).
        backend (str): ``'auto'`` (mmcv's CUDA kernel where it runs, else
            the reference, as mmcv's module does; during ONNX export the
            reference), ``'compiled'`` (mmcv's kernel or an error) or
            ``'reference'`` (standard operators, any device). Defaults to
            'auto'.

    Returns:
        Tensor: (B, Q, heads * D), dtype of ``value``.
    """
    MS_DEFORM_ATTN_BACKENDS.check_name(backend)
    _check(value, shapes, sampling_locations, attention_weights)
    run = MS_DEFORM_ATTN_BACKENDS.select(backend, value.device, value.dtype)
    return run(value, shapes, sampling_locations, attention_weights)


def ms_deform_attn_backends(device='cpu') -> Tuple[str, ...]:
    """Backends of :func:`ms_deform_attn` that run on ``device`` here."""
    return MS_DEFORM_ATTN_BACKENDS.available(device)
