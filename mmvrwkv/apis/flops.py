"""FLOPs as Vision-RWKV publishes them, and mmengine handles for our
operators.

The paper's numbers are mmcv 1.x ``get_model_complexity_info``
multiply-accumulates plus analytic terms that counter cannot see:

* per VRWKV layer, ``29 * T * C`` for Bi-WKV (official
  classification/get_flops_backbone.py);
* per VRWKV6 layer, ``T * C * (10 * 32 + 2 * 64 + 7 * 64 + 17) +
  T * (5 * 32 + 64)`` (low-rank widths 32 and 64, head size 64; same
  script), which covers Bi-WKV6 and the low-rank token-shift and decay
  projections: those are plain parameters multiplied with ``@``, which the
  counter does not see;
* per adapter extractor (the four of the interaction blocks and the two
  extra ones), ``5 * Q * K * C`` for its deformable attention: Q queries
  (the spatial-prior tokens, ``H/8*W/8 + H/16*W/16 + H/32*W/32``), K = 4
  sampling points, C the embedding width. The official repository ships no
  dense FLOPs script; this term, with the counter and the Bi-WKV term,
  reproduces seven of the eight dense numbers of its README to the printed
  digit (docs/benchmarks.md, FLOPs); ``5 * n * K * c`` is the deformable
  term of the same group's InternImage and PIIP scripts.

mmcv 2.x still ships that counter (``mmcv.cnn.utils.flops_counter``):
forward hooks on module types only, so convolutions (with their bias),
linear layers, LayerNorm / BatchNorm / GroupNorm (``numel``, twice when
affine), ReLU, pooling and ``nn.Upsample`` are counted, while functional
ops (``F.interpolate``, ``torch.relu``, ``grid_sample`` inside deformable
attention), RoIAlign and module types it does not list (``SyncBatchNorm``,
``GELU``) count zero. We run that very counter and add the analytic terms
from the shapes each module sees, so the result does not depend on which
kernel runs.

mmengine's counter (``mmengine.analysis``, which the mm tools use) traces
the model with ``torch.jit`` and counts operators by name; our compiled
operators are unknown to it and would count zero; the models that use
them register a handle for each when built
(:mod:`mmvrwkv.models.flop_handles`).
"""
import importlib
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmcv.cnn.utils.flops_counter import add_flops_counting_methods
from mmengine.model import BaseModel

from ..models.backbones.adapter_modules import Extractor
from ..models.flop_handles import (WKV6_FLOPS_PER_HEAD_CHANNEL,
                                   WKV6_FLOPS_PER_TOKEN_CHANNEL_EXTRA,
                                   WKV_FLOPS_PER_TOKEN_CHANNEL,
                                   register_flop_handles)
from ..models.layers import SpatialMix, SpatialMixV6
from ..models.layers.spatial_mix_v6 import DECAY_RANK, HEAD_SIZE, MIX_RANK

# official vrwkv6_flops(n, dim, head_size): the Bi-WKV6 operator ...
WKV6_OP_FLOPS_PER_TOKEN_CHANNEL = WKV6_FLOPS_PER_HEAD_CHANNEL * HEAD_SIZE + \
    WKV6_FLOPS_PER_TOKEN_CHANNEL_EXTRA
# ... plus the low-rank projections (10 * 32 + 2 * 64 per token-channel)
# and their tanh (5 * 32 + 64 per token)
WKV6_FLOPS_PER_TOKEN_CHANNEL = MIX_RANK * 10 + DECAY_RANK * 2 + \
    WKV6_OP_FLOPS_PER_TOKEN_CHANNEL
WKV6_FLOPS_PER_TOKEN = MIX_RANK * 5 + DECAY_RANK
# InternImage's dcnv3_flops / PIIP's deformable_attn_flops: 5 * n * K * c
DEFORM_FLOPS_PER_QUERY_POINT_CHANNEL = 5
_COUNTER_ATTRS = ('__flops__', '__params__', '__batch_counter__')


def analytic_flops(module: nn.Module, T: int, C: int) -> int:
    """The term the official script adds for one token-mixing layer that
    sees T tokens of C channels."""
    if isinstance(module, SpatialMixV6):
        return T * (C * WKV6_FLOPS_PER_TOKEN_CHANNEL + WKV6_FLOPS_PER_TOKEN)
    return WKV_FLOPS_PER_TOKEN_CHANNEL * T * C


def extractor_flops(extractor: Extractor, Q: int, C: int) -> int:
    """The deformable-attention term of one adapter extractor whose Q
    queries have C channels (``5 * Q * points * C``)."""
    return DEFORM_FLOPS_PER_QUERY_POINT_CHANNEL * Q * \
        extractor.attn.num_points * C


def count_flops(model: nn.Module,
                inputs: Sequence[torch.Tensor],
                data_samples: Optional[list] = None) -> Dict:
    """FLOPs per image of ``model(*inputs)``, counted as in the paper. mm
    models (classifiers, detectors, segmentors) run in tensor mode,
    ``model(*inputs, data_samples, mode='tensor')``; detectors need the
    data samples (:func:`model_inputs` makes both).

    Returns:
        dict: ``total``; ``traced`` (the mmcv counter's MACs); ``wkv`` (the
        analytic term of every Spatial Mix: :func:`analytic_flops`);
        ``deform`` (that of every adapter extractor:
        :func:`extractor_flops`); ``parts``: the traced MACs of each
        top-level submodule (``backbone``, ``neck``, ``rpn_head``, ...).
    """
    wkv, deform = [], []

    def record_mix(module, args):
        _, T, C = args[0].shape
        wkv.append(analytic_flops(module, T, C))

    def record_extractor(module, args):
        _, Q, C = args[0].shape
        deform.append(extractor_flops(module, Q, C))

    hooks = []
    for m in model.modules():
        if isinstance(m, (SpatialMix, SpatialMixV6)):
            hooks.append(m.register_forward_pre_hook(record_mix))
        elif isinstance(m, Extractor):
            hooks.append(m.register_forward_pre_hook(record_extractor))
    was_training = model.training
    # mmcv's counter adds its methods to the module it is given: give it a
    # wrapper, which also calls mm models in tensor mode
    counter = add_flops_counting_methods(_TensorMode(model, data_samples))
    counter.eval()
    try:
        counter.start_flops_count()
        with torch.no_grad():
            counter(*inputs)
        traced, _ = counter.compute_average_flops_cost()
        parts = _traced_parts(model, counter.__batch_counter__)
        counter.stop_flops_count()
    finally:
        for h in hooks:
            h.remove()
        _remove_counter(counter)
        model.train(was_training)
    traced = int(traced)
    return dict(total=traced + sum(wkv) + sum(deform),
                traced=traced,
                wkv=sum(wkv),
                deform=sum(deform),
                parts=parts)


def model_inputs(model: nn.Module,
                 shape: Tuple[int, int]) -> Tuple[Tuple, Optional[list]]:
    """A random image of ``shape`` (H, W) as ``model`` takes it:
    ``((inputs, ), data_samples)`` for :func:`count_flops`.

    mm models (``BaseModel``) get it the way mmdet's get_flops tool feeds
    them: a uint8 image and a data sample with its shapes, through the
    model's data preprocessor (normalisation, padding to the size divisor;
    it records ``batch_input_shape`` and ``pad_shape``, which the detection
    heads read). Other modules (a backbone) get a (1, 3, H, W) tensor.
    """
    H, W = shape
    if not isinstance(model, BaseModel):
        param = next(model.parameters(), None)
        device = param.device if param is not None else None
        return (torch.randn(1, 3, H, W, device=device), ), None
    sample = _data_sample_type(model)(metainfo=dict(
        img_shape=(H, W), ori_shape=(H, W), scale_factor=(1.0, 1.0)))
    batch = dict(inputs=[torch.randint(0, 256, (3, H, W), dtype=torch.uint8)],
                 data_samples=[sample])
    data = model.data_preprocessor(batch, False)
    return (data['inputs'], ), data['data_samples']


_SAMPLE_TYPES = {
    'mmdet': 'mmdet.structures.DetDataSample',
    'mmseg': 'mmseg.structures.SegDataSample',
    'mmpretrain': 'mmpretrain.structures.DataSample',
}


def _data_sample_type(model: nn.Module) -> type:
    """The data-sample class of the library the model class comes from."""
    path = _SAMPLE_TYPES.get(
        type(model).__module__.split('.')[0],
        'mmengine.structures.BaseDataElement')
    module, name = path.rsplit('.', 1)
    return getattr(importlib.import_module(module), name)


class _TensorMode(nn.Module):
    """``model(*inputs)``, or ``model(*inputs, data_samples,
    mode='tensor')`` for mm models (classifiers, detectors, segmentors);
    no parameters of its own, and not a module type the counter counts."""

    def __init__(self, model: nn.Module, data_samples: Optional[list] = None):
        super().__init__()
        self.model = model
        self.data_samples = data_samples

    def forward(self, *inputs):
        if isinstance(self.model, BaseModel):
            return self.model(*inputs, self.data_samples, mode='tensor')
        return self.model(*inputs)


def _traced_parts(model: nn.Module, batches: int) -> Dict[str, int]:
    """The counter's MACs summed per top-level submodule of ``model``."""
    parts = {}
    for name, child in model.named_children():
        flops = sum(m.__dict__.get('__flops__', 0) for m in child.modules())
        parts[name] = int(flops / max(batches, 1))
    return parts


def _remove_counter(counter: nn.Module) -> None:
    """Undo add_flops_counting_methods (it leaves hooks and counters on the
    modules, and warns when it is applied to them a second time)."""
    for m in counter.modules():
        handle = m.__dict__.pop('__flops_handle__', None)
        if handle is not None:
            handle.remove()
        for name in _COUNTER_ATTRS:
            m.__dict__.pop(name, None)


def count_flops_mmengine(model: nn.Module,
                         inputs: Sequence[torch.Tensor],
                         data_samples: Optional[list] = None) -> int:
    """The FLOPs mmengine's analyzer counts for ``model(*inputs)`` (tensor
    mode for mm models), with our operators' handles registered."""
    from mmengine.analysis import FlopAnalyzer
    register_flop_handles()
    was_training = model.training
    model.eval()
    try:
        analyzer = FlopAnalyzer(_TensorMode(model, data_samples),
                                tuple(inputs))
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        return int(analyzer.total())
    finally:
        model.train(was_training)
