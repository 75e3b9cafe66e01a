"""FLOPs as Vision-RWKV publishes them.

The paper's numbers are mmcv 1.x ``get_model_complexity_info``
multiply-accumulates plus an analytic term for the WKV op, ``29 * T * C`` per
layer (official classification/get_flops_backbone.py). mmcv 2.x still ships
that counter (``mmcv.cnn.utils.flops_counter``): forward hooks on module
types only, so convolutions (with their bias), linear layers, LayerNorm /
BatchNorm / GroupNorm (``numel``, twice when affine), ReLU, pooling and
``nn.Upsample`` are counted, while functional ops (``F.interpolate``,
``torch.relu``, ``grid_sample`` inside deformable attention) and module types
it does not list (``SyncBatchNorm``, ``GELU``) count zero. We run that very
counter and add the WKV term from the token count each SpatialMix sees, so the
result does not depend on which Bi-WKV kernel runs.
"""
from typing import Dict, Sequence

import torch
import torch.nn as nn
from mmcv.cnn.utils.flops_counter import add_flops_counting_methods
from mmengine.model import BaseModel

from ..models.layers import SpatialMix

WKV_FLOPS_PER_TOKEN_CHANNEL = 29
_COUNTER_ATTRS = ('__flops__', '__params__', '__batch_counter__')


def count_flops(model: nn.Module,
                inputs: Sequence[torch.Tensor]) -> Dict[str, int]:
    """FLOPs per image of ``model(*inputs)``, counted as in the paper. mm
    models (classifiers, detectors, segmentors) run with ``mode='tensor'``.

    Returns:
        dict: ``total``, ``traced`` (the mmcv counter's MACs) and ``wkv``.
    """
    wkv = []

    def record(module, args):
        _, T, C = args[0].shape
        wkv.append(WKV_FLOPS_PER_TOKEN_CHANNEL * T * C)

    hooks = [m.register_forward_pre_hook(record) for m in model.modules()
             if isinstance(m, SpatialMix)]
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
