"""FLOPs as Vision-RWKV publishes them.

The paper's numbers are mmcv 1.x ``get_model_complexity_info``
multiply-accumulates plus an analytic term per token-mixing layer (official
classification/get_flops_backbone.py):

* VRWKV: ``29 * T * C`` for Bi-WKV;
* VRWKV6: ``T * C * (10 * 32 + 2 * 64 + 7 * 64 + 17) + T * (5 * 32 + 64)``
  (low-rank widths 32 and 64, head size 64), which covers Bi-WKV6 and the
  low-rank token-shift and decay projections: those are plain parameters
  multiplied with ``@``, which the counter does not see.

mmcv 2.x still ships
that counter (``mmcv.cnn.utils.flops_counter``): forward hooks on module
types only, so convolutions (with their bias), linear layers, LayerNorm /
BatchNorm / GroupNorm (``numel``, twice when affine), ReLU, pooling and
``nn.Upsample`` are counted, while functional ops (``F.interpolate``,
``torch.relu``, ``grid_sample`` inside deformable attention) and module types
it does not list (``SyncBatchNorm``, ``GELU``) count zero. We run that very
counter and add the analytic term from the shape each Spatial Mix sees, so
the result does not depend on which Bi-WKV kernel runs.
"""
from typing import Dict, Sequence

import torch
import torch.nn as nn
from mmcv.cnn.utils.flops_counter import add_flops_counting_methods
from mmengine.model import BaseModel

from ..models.layers import SpatialMix, SpatialMixV6
from ..models.layers.spatial_mix_v6 import DECAY_RANK, HEAD_SIZE, MIX_RANK

WKV_FLOPS_PER_TOKEN_CHANNEL = 29
# official vrwkv6_flops(n, dim, head_size)
WKV6_FLOPS_PER_TOKEN_CHANNEL = MIX_RANK * 10 + DECAY_RANK * 2 + \
    7 * HEAD_SIZE + 17
WKV6_FLOPS_PER_TOKEN = MIX_RANK * 5 + DECAY_RANK
_COUNTER_ATTRS = ('__flops__', '__params__', '__batch_counter__')


def analytic_flops(module: nn.Module, T: int, C: int) -> int:
    """The term the official script adds for one token-mixing layer that
    sees T tokens of C channels."""
    if isinstance(module, SpatialMixV6):
        return T * (C * WKV6_FLOPS_PER_TOKEN_CHANNEL + WKV6_FLOPS_PER_TOKEN)
    return WKV_FLOPS_PER_TOKEN_CHANNEL * T * C


def count_flops(model: nn.Module,
                inputs: Sequence[torch.Tensor]) -> Dict[str, int]:
    """FLOPs per image of ``model(*inputs)``, counted as in the paper. mm
    models (classifiers, detectors, segmentors) run with ``mode='tensor'``.

    Returns:
        dict: ``total``, ``traced`` (the mmcv counter's MACs) and ``wkv``
        (the analytic term of every Spatial Mix: :func:`analytic_flops`).
    """
    wkv = []

    def record(module, args):
        _, T, C = args[0].shape
        wkv.append(analytic_flops(module, T, C))

    hooks = [m.register_forward_pre_hook(record) for m in model.modules()
             if isinstance(m, (SpatialMix, SpatialMixV6))]
    was_training = model.training
    # mmcv's counter adds its methods to the module it is given: give it a
    # wrapper, which also calls mm models in tensor mode
    counter = add_flops_counting_methods(_TensorMode(model))
    counter.eval()
    try:
        counter.start_flops_count()
        with torch.no_grad():
            counter(*inputs)
        traced, _ = counter.compute_average_flops_cost()
        counter.stop_flops_count()
    finally:
        for h in hooks:
            h.remove()
        _remove_counter(counter)
        model.train(was_training)
    traced = int(traced)
    return dict(total=traced + sum(wkv), traced=traced, wkv=sum(wkv))


class _TensorMode(nn.Module):
    """``model(*inputs)``, or ``model(*inputs, mode='tensor')`` for mm
    models (classifiers, detectors, segmentors); no parameters of its own,
    and not a module type the counter counts."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *inputs):
        if isinstance(self.model, BaseModel):
            return self.model(*inputs, mode='tensor')
        return self.model(*inputs)


def _remove_counter(counter: nn.Module) -> None:
    """Undo add_flops_counting_methods (it leaves hooks and counters on the
    modules, and warns when it is applied to them a second time)."""
    for m in counter.modules():
        handle = m.__dict__.pop('__flops_handle__', None)
        if handle is not None:
            handle.remove()
        for name in _COUNTER_ATTRS:
            m.__dict__.pop(name, None)
