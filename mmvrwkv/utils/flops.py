"""FLOPs as Vision-RWKV publishes them.

The paper's numbers are mmcv 1.x ``get_model_complexity_info``
multiply-accumulates (convolutions and linear layers; LayerNorm as
``numel * 2`` when affine; element-wise ops not counted) plus an analytic term
for the WKV op, ``29 * T * C`` per layer (official
classification/get_flops_backbone.py). We trace with mmengine's FlopAnalyzer,
count LayerNorm the mmcv 1.x way, and add the WKV term from the token count
each SpatialMix sees, so the result does not depend on which Bi-WKV kernel
runs.
"""
import functools
from typing import Dict, Sequence

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer
from mmengine.analysis.jit_handles import get_shape
from mmengine.model import BaseModel

from mmvrwkv.models.layers import SpatialMix

WKV_FLOPS_PER_TOKEN_CHANNEL = 29


def _layer_norm_mmcv(inputs, outputs) -> int:
    numel = 1
    for d in get_shape(inputs[0]):
        numel *= d
    has_affine = get_shape(inputs[2]) is not None
    return numel * (2 if has_affine else 1)


def count_flops(model: nn.Module,
                inputs: Sequence[torch.Tensor]) -> Dict[str, int]:
    """FLOPs of ``model(*inputs)``, counted as in the paper. mm models
    (classifiers, detectors, segmentors) run with ``mode='tensor'``.

    Returns:
        dict: ``total``, ``traced`` (conv/linear/norm MACs) and ``wkv``.
    """
    wkv = []

    def record(module, args):
        B, T, C = args[0].shape
        wkv.append(WKV_FLOPS_PER_TOKEN_CHANNEL * B * T * C)

    hooks = [m.register_forward_pre_hook(record) for m in model.modules()
             if isinstance(m, SpatialMix)]
    was_training = model.training
    model.eval()
    if isinstance(model, BaseModel):
        model.forward = functools.partial(type(model).forward, model,
                                          mode='tensor')
    try:
        with torch.no_grad():
            analyzer = FlopAnalyzer(model, tuple(inputs))
            analyzer.set_op_handle('aten::layer_norm', _layer_norm_mmcv)
            analyzer.unsupported_ops_warnings(False)
            analyzer.uncalled_modules_warnings(False)
            traced = analyzer.total()
            # FlopAnalyzer traces once; count the WKV term from one run.
            wkv.clear()
            model(*inputs)
    finally:
        for h in hooks:
            h.remove()
        model.__dict__.pop('forward', None)
        model.train(was_training)
    return dict(total=traced + sum(wkv), traced=traced, wkv=sum(wkv))
