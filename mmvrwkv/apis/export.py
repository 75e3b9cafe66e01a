"""Export a VRWKV or VRWKV6 model to ONNX and check the file in
onnxruntime (what ``tools/export_onnx.py`` runs).

What is exported: a graph of fixed input shape (B, 3, H, W), an image
normalised as the config's data_preprocessor does (mean/std, RGB), which
stays outside the graph, to

* a classifier (mmpretrain config): the logits, (B, num_classes);
* a segmentor (mmseg config): the decode head's logits at 1/4 resolution,
  ``model(x, mode='tensor')``, (B, num_classes, H/4, W/4), before resizing
  to the image and arg-max;
* a backbone (``backbone_only``; any config, detectors included): its
  outputs, ``feat0``, ``feat1``, ...

It is plain ``torch.onnx.export(..., dynamo=True)``: ONNX has no Bi-WKV
operator, and while the exporter traces the model the operators' ``'auto'``
backends compute Bi-WKV and Bi-WKV6 with their loop-free chunked forms
(:func:`mmvrwkv.ops.bi_wkv_chunked`, :func:`mmvrwkv.ops.bi_wkv6_chunked`;
chunks of ceil(sqrt(T)) tokens, O(T^1.5) memory) and the adapters'
deformable sampling with ``grid_sample``. A model built with
``wkv_backend='chunked'`` exports the same graph.

The file is then compared with PyTorch eager (the same weights; there the
compiled kernels run, so the check is independent of the chunked forms).
"""
import os
import os.path as osp
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm

from .model_builder import build_model as build_config_model
from .official_checkpoint import load_weights

KINDS = {'mmpretrain': 'classifier', 'mmseg': 'segmentor', 'mmdet': None}


class ExportError(RuntimeError):
    """A problem the user can fix (config, checkpoint, arguments)."""


# ---- the model ------------------------------------------------------------
class TensorForward(nn.Module):
    """The part of an mm model that ONNX gets: images in, tensors out."""

    def __init__(self, model: nn.Module, kind: str):
        super().__init__()
        self.model = model
        self.kind = kind

    def forward(self, x: torch.Tensor):
        if self.kind == 'backbone':
            return tuple(self.model(x))
        # classifier: the head's logits; segmentor: the decode head's logits
        return self.model(x, mode='tensor')

    def output_names(self, count: int) -> List[str]:
        if self.kind == 'classifier':
            return ['logits']
        if self.kind == 'segmentor':
            return ['seg_logits']
        return [f'feat{i}' for i in range(count)]


def build_export_model(config: str, checkpoint: Optional[str] = None,
                       backbone_only: bool = False) -> TensorForward:
    """The config's model (or its backbone) in eval mode on the CPU, with
    the checkpoint's weights, ready for :func:`export_onnx`.

    Raises:
        ExportError: the config cannot be read or is not a classifier /
            segmentor config (detectors: ``backbone_only`` only), or the
            checkpoint does not match the model.
        FileNotFoundError: no such config or checkpoint file.
    """
    if not osp.isfile(config):
        raise FileNotFoundError(f'config {config} does not exist')
    try:
        cfg = Config.fromfile(config)
    except Exception as err:  # syntax errors, missing _base_, bad imports
        raise ExportError(f'cannot read config {config}: '
                          f'{type(err).__name__}: {err}') from err
    scope = cfg.get('default_scope')
    if scope not in KINDS or 'model' not in cfg:
        raise ExportError(
            f'config {config} has default_scope {scope!r}'
            + ('' if 'model' in cfg else ' and no model') +
            '; export supports classifier (mmpretrain), segmentor (mmseg) '
            'and, backbone only, detector (mmdet) configs')
    kind = 'backbone' if backbone_only else KINDS[scope]
    if kind is None:
        raise ExportError(
            f'{config} is a detector config: only its backbone exports '
            '(--backbone-only); the detector heads post-process with '
            'data-dependent shapes')
    # no init_cfg: nothing would be downloaded even if weights were
    # initialised; no data preprocessor: normalisation stays outside
    model = build_config_model(cfg, backbone_only=backbone_only,
                               init_cfg=False, data_preprocessor=False)
    # SyncBN is BN in eval mode; plain BN needs no process group
    model = revert_sync_batchnorm(model)
    if checkpoint is not None:
        try:
            load_weights(model, checkpoint, backbone_only)
        except (ValueError, RuntimeError) as err:
            raise ExportError(str(err)) from err
    model.eval()
    return TensorForward(model, kind)


# ---- export -----------------------------------------------------------------
def export_onnx(module: TensorForward, x: torch.Tensor, out: str,
                opset: Optional[int] = None) -> List[str]:
    """``torch.onnx.export(module, (x, ), dynamo=True)`` to the file
    ``out`` (weights inside).

    The model needs no swap: during ONNX export the operators' ``'auto'``
    backends run their standard-operator forms (Bi-WKV and Bi-WKV6 chunked,
    deformable sampling by ``grid_sample``), and a backend that cannot be
    exported raises an error naming the fix.

    Returns:
        list[str]: the output names.
    """
    with torch.no_grad():
        names = module.output_names(len(_as_list(module(x))))
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    program = torch.onnx.export(
        module, (x, ), dynamo=True, input_names=['input'],
        output_names=names, opset_version=opset, external_data=False,
        verbose=False)
    program.save(out, external_data=False)
    return names


# ---- check ------------------------------------------------------------------
def _as_list(outputs) -> List[torch.Tensor]:
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    return list(outputs)


def compare_with_onnxruntime(path: str, module: nn.Module, x: torch.Tensor,
                             threads: Optional[int] = None) -> Dict:
    """Run the ONNX file in onnxruntime (CPU) and PyTorch eager on ``x``.

    Returns:
        dict: ``max_abs`` and ``max_rel`` (the largest absolute difference
        divided by the largest magnitude of the PyTorch output, per output;
        the worst output) and per-output ``outputs``.
    """
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    session = ort.InferenceSession(path, options,
                                   providers=['CPUExecutionProvider'])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        want = [t.numpy() for t in _as_list(module(x))]
    if len(got) != len(want):
        raise ExportError(f'onnxruntime returned {len(got)} outputs, '
                          f'PyTorch {len(want)}')
    report = []
    for name, g, w in zip((o.name for o in session.get_outputs()), got, want):
        if g.shape != w.shape:
            raise ExportError(f'output {name}: onnxruntime shape {g.shape}, '
                              f'PyTorch {w.shape}')
        abs_err = float(np.abs(g.astype(np.float64) - w).max())
        rel_err = abs_err / max(float(np.abs(w).max()), 1e-12)
        report.append(dict(name=name, shape=list(w.shape), max_abs=abs_err,
                           max_rel=rel_err))
    return dict(max_abs=max(r['max_abs'] for r in report),
                max_rel=max(r['max_rel'] for r in report), outputs=report)
