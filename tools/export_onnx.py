"""Export a VRWKV or VRWKV6 model to ONNX and check the file with
onnxruntime.

    python tools/export_onnx.py configs/vrwkv_t_in1k.py vrwkv_t.pth \
        --out vrwkv_t.onnx
    python tools/export_onnx.py configs/upernet_vrwkv_t.py upernet_t.pth \
        --shape 512 512 --out upernet_t.onnx
    python tools/export_onnx.py configs/upernet_vrwkv_t.py --backbone-only
    python tools/export_onnx.py configs/upernet_vrwkv6_t.py --shape 512 512

What is exported: a graph of fixed input shape (B, 3, H, W) (``--batch``,
``--shape``; default 1 x 3 x 224 x 224), an image normalised as the config's
data_preprocessor does (mean/std, RGB), which stays outside the graph, to

* a classifier (mmpretrain config): the logits, (B, num_classes);
* a segmentor (mmseg config): the decode head's logits at 1/4 resolution,
  ``model(x, mode='tensor')``, (B, num_classes, H/4, W/4), before resizing
  to the image and arg-max;
* ``--backbone-only`` (any config, detectors included): the backbone's
  outputs, ``feat0``, ``feat1``, ...

ONNX has no Bi-WKV operator: the model is captured with ``torch.export``,
where VRWKV's Bi-WKV is the operator ``torch.ops.mmvrwkv.bi_wkv`` and
VRWKV6's Bi-WKV6 the operator ``torch.ops.mmvrwkv.bi_wkv6``; before torch's
ONNX exporter runs (``ExportedProgram.run_decompositions``) they are
replaced by :func:`mmvrwkv.ops.bi_wkv_chunked.bi_wkv_chunked` and
:func:`mmvrwkv.ops.bi_wkv6_chunked.bi_wkv6_chunked`, the same sums from
standard operators, in chunks of ``--chunk`` tokens (default
ceil(sqrt(T))) and without loops, so the graph does not grow with the token
count (O(T^1.5) memory). Q-Shift (VRWKV's and VRWKV6's per-head one) is
traced in an equivalent form from slices and padding
(:func:`q_shift_padded`, :func:`q_shift_multihead_padded`), which gives a
graph a third the size. The adapters' deformable attention exports through
mmcv's PyTorch function.

The file is then run in onnxruntime on a random input and compared with
PyTorch eager (the same weights; Bi-WKV and Bi-WKV6 there are the compiled
kernels, so the check is independent of the decompositions): the tool
prints the largest
absolute difference and the difference relative to the largest output
magnitude, and exits with status 1 if that exceeds ``--rtol`` (default
1e-4).

Weights are random unless CHECKPOINT is given (``init_cfg`` pretrained URLs
in configs are ignored: nothing is downloaded). CHECKPOINT is loaded
weights-only and must match the model exactly (a full-model checkpoint's
``backbone.`` part is used with ``--backbone-only``).
"""
import argparse
import contextlib
import os
import os.path as osp
import sys
import time
from functools import partial
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

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


def build_model(config: str, checkpoint: Optional[str] = None,
                backbone_only: bool = False) -> TensorForward:
    """The config's model (or its backbone) in eval mode on the CPU, with
    the checkpoint's weights, ready for :func:`export_onnx`.

    Raises:
        ExportError: the config cannot be read or is not a classifier /
            segmentor config (detectors: ``backbone_only`` only), or the
            checkpoint does not match the model.
        FileNotFoundError: no such config or checkpoint file.
    """
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm

    from mmvrwkv.apis import build_model as build_config_model

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
            'and, with --backbone-only, detector (mmdet) configs')
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
        load_weights(model, checkpoint, backbone_only)
    model.eval()
    return TensorForward(model, kind)


def load_weights(model: nn.Module, checkpoint: str,
                 backbone_only: bool) -> None:
    """Load ``checkpoint`` (weights only) into ``model``, strictly."""
    from mmengine.runner.checkpoint import load_state_dict

    from mmvrwkv.apis.official_checkpoint import (compare_shapes,
                                                  find_state_dict,
                                                  strip_module_prefix)
    from mmvrwkv.utils.safe_loading import load_checkpoint_file
    try:
        loaded = load_checkpoint_file(checkpoint, map_location='cpu')
    except RuntimeError as err:  # unreadable or pickled code: named there
        raise ExportError(str(err)) from err
    try:
        state_dict, _ = find_state_dict(loaded)
    except ValueError as err:
        raise ExportError(f'{checkpoint}: {err}') from err
    state_dict, _ = strip_module_prefix(state_dict)
    if backbone_only and any(k.startswith('backbone.') for k in state_dict):
        state_dict = {k[len('backbone.'):]: v for k, v in state_dict.items()
                      if k.startswith('backbone.')}
    problems = compare_shapes(state_dict, model)
    if problems:
        raise ExportError(
            f'checkpoint {checkpoint} does not match the model of the '
            'config' + (' (backbone)' if backbone_only else '') + ': '
            + '; '.join(problems))
    load_state_dict(model, state_dict, strict=True)


# ---- export -----------------------------------------------------------------
def _ms_deform_attn_pytorch(value, shapes, sampling_locations,
                            attention_weights):
    """``torch.ops.mmvrwkv.ms_deform_attn`` (the adapter's deformable
    sampling on CUDA) as mmcv's PyTorch function, which it computes."""
    from mmcv.ops.multi_scale_deform_attn import \
        multi_scale_deformable_attn_pytorch
    pairs = [(shapes[i], shapes[i + 1]) for i in range(0, len(shapes), 2)]
    return multi_scale_deformable_attn_pytorch(value, pairs,
                                               sampling_locations,
                                               attention_weights)


def export_decompositions(chunk: Optional[int] = None) -> dict:
    """The mmvrwkv operators in standard ones, for
    ``ExportedProgram.run_decompositions``: Bi-WKV as
    :func:`~mmvrwkv.ops.bi_wkv_chunked.bi_wkv_chunked` and, when registered,
    Bi-WKV6 as :func:`~mmvrwkv.ops.bi_wkv6_chunked.bi_wkv6_chunked` (both in
    chunks of ``chunk`` tokens, default ceil(sqrt(T))) and the CUDA
    deformable attention as mmcv's PyTorch function (a model traced on the
    CPU already uses that)."""
    from mmvrwkv.ops.bi_wkv6_chunked import bi_wkv6_chunked
    from mmvrwkv.ops.bi_wkv_chunked import bi_wkv_chunked
    try:
        table = {torch.ops.mmvrwkv.bi_wkv.default:
                 partial(bi_wkv_chunked, chunk=chunk)}
    except (AttributeError, RuntimeError) as err:
        raise ExportError(
            'torch.ops.mmvrwkv.bi_wkv is not registered: build the '
            'extension (`pip install --no-build-isolation -e .`)') from err
    if hasattr(torch.ops.mmvrwkv, 'bi_wkv6'):
        table[torch.ops.mmvrwkv.bi_wkv6.default] = partial(bi_wkv6_chunked,
                                                           chunk=chunk)
    if hasattr(torch.ops.mmvrwkv, 'ms_deform_attn'):
        table[torch.ops.mmvrwkv.ms_deform_attn.default] = \
            _ms_deform_attn_pytorch
    return table


def _quad_shift_padded(src: torch.Tensor, shift_pixel: int,
                       groups: Sequence[int]) -> torch.Tensor:
    """``_quad_shift`` of :mod:`mmvrwkv.models.layers.shift` (``src`` of
    shape (B, H, W, ..., c), channel groups ``groups``) from slices, zero
    padding and one concatenation."""
    H, W = src.shape[1:3]
    sw, sh = min(shift_pixel, W), min(shift_pixel, H)
    _, g1, g2, g3, g4 = groups
    keep = (0, 0) * (src.dim() - 3)  # the dims after W, channels included
    pad = torch.nn.functional.pad
    parts = [
        pad(src[:, :, :W - sw, ..., :g1], keep + (sw, 0)),  # from the left
        pad(src[:, :, sw:, ..., g1:g2], keep + (0, sw)),  # from the right
        pad(src[:, :H - sh, :, ..., g2:g3], keep + (0, 0, sh, 0)),  # above
        pad(src[:, sh:, :, ..., g3:g4], keep + (0, 0, 0, sh)),  # below
        src[..., g4:],
    ]
    return torch.cat(parts, dim=-1)


def q_shift_padded(x: torch.Tensor, shift_pixel: int, gamma: float,
                   patch_resolution: Sequence[int]) -> torch.Tensor:
    """:func:`mmvrwkv.models.layers.shift.q_shift` from slices, zero padding
    and one concatenation instead of assignments into an empty tensor: the
    same values (pure data movement), but a small graph. Exported, each of
    q_shift's nine slice assignments becomes a ScatterND with its own index
    arithmetic (about 700 ONNX nodes per block, which also makes the ONNX
    optimiser take minutes); this is 9 Slice/Pad nodes and a Concat."""
    B, N, C = x.shape
    H, W = patch_resolution
    groups = [int(C * gamma * i) for i in range(5)]
    return _quad_shift_padded(x.reshape(B, H, W, C), shift_pixel,
                              groups).reshape(B, N, C)


def q_shift_multihead_padded(x: torch.Tensor, shift_pixel: int,
                             gamma: float, patch_resolution: Sequence[int],
                             head_dim: int = 64) -> torch.Tensor:
    """:func:`mmvrwkv.models.layers.shift.q_shift_multihead` (VRWKV6's
    Q-Shift within each head) in the form of :func:`q_shift_padded`."""
    from mmvrwkv.models.layers.shift import multihead_layout
    src, groups = multihead_layout(x, gamma, patch_resolution, head_dim)
    return _quad_shift_padded(src, shift_pixel, groups).reshape(x.shape)


@contextlib.contextmanager
def padded_q_shift(model: nn.Module):
    """Every Q-Shift of ``model`` (``q_shift`` and VRWKV6's
    ``q_shift_multihead``) as :func:`q_shift_padded` /
    :func:`q_shift_multihead_padded` inside the context."""
    from mmvrwkv.models.layers.shift import q_shift, q_shift_multihead
    padded = {q_shift: q_shift_padded,
              q_shift_multihead: q_shift_multihead_padded}
    changed = [(m, m.shift_func) for m in model.modules()
               if getattr(m, 'shift_func', None) in padded]
    for m, func in changed:
        m.shift_func = padded[func]
    try:
        yield
    finally:
        for m, func in changed:
            m.shift_func = func


def export_onnx(module: TensorForward, x: torch.Tensor, out: str,
                chunk: Optional[int] = None,
                opset: Optional[int] = None) -> List[str]:
    """torch.export ``module`` on ``x``, replace Bi-WKV and Bi-WKV6 by
    standard operators (:func:`export_decompositions`) and write the ONNX
    file ``out`` (weights inside).

    Returns:
        list[str]: the output names.
    """
    with torch.no_grad(), padded_q_shift(module):
        ep = torch.export.export(module, (x, ))
        ep = ep.run_decompositions(export_decompositions(chunk))
    names = module.output_names(len(ep.graph_signature.user_outputs))
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    program = torch.onnx.export(
        ep, (x, ), dynamo=True, input_names=['input'], output_names=names,
        opset_version=opset, external_data=False, verbose=False)
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


# ---- command line -----------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export a VRWKV or VRWKV6 classifier, segmentor or '
        'backbone to ONNX (Bi-WKV / Bi-WKV6 as standard operators) and check '
        'it in onnxruntime.')
    parser.add_argument('config', help='mmpretrain/mmseg (or, with '
                        '--backbone-only, mmdet) config')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='.pth or .safetensors weights (default: random '
                        'weights)')
    parser.add_argument('--out', default=None,
                        help='ONNX file (default: <config name>.onnx, '
                        '<config name>_backbone.onnx with --backbone-only)')
    parser.add_argument('--shape', type=int, nargs=2, default=[224, 224],
                        metavar=('H', 'W'),
                        help='input height and width (default: 224 224)')
    parser.add_argument('--batch', type=int, default=1,
                        help='batch size of the graph (default: 1)')
    parser.add_argument('--backbone-only', action='store_true',
                        help='export only model.backbone')
    parser.add_argument('--chunk', type=int, default=None,
                        help='Bi-WKV / Bi-WKV6 chunk length (default: '
                        'ceil(sqrt(T)))')
    parser.add_argument('--opset', type=int, default=None,
                        help="ONNX opset (default: torch's)")
    parser.add_argument('--rtol', type=float, default=1e-4,
                        help='largest accepted difference from PyTorch, '
                        'relative to the output scale (default: 1e-4)')
    parser.add_argument('--no-check', action='store_true',
                        help='skip the onnxruntime comparison')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the random weights and sample input')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.batch < 1 or min(args.shape) < 1:
        sys.exit('error: --batch and --shape must be positive')
    out = args.out or osp.splitext(osp.basename(args.config))[0] + (
        '_backbone' if args.backbone_only else '') + '.onnx'
    torch.manual_seed(args.seed)
    try:
        module = build_model(args.config, args.checkpoint,
                             args.backbone_only)
        x = torch.randn(args.batch, 3, *args.shape,
                        generator=torch.Generator().manual_seed(args.seed))
        start = time.perf_counter()
        names = export_onnx(module, x, out, args.chunk, args.opset)
        print(f'wrote {out} ({osp.getsize(out) / 2**20:.1f} MiB, outputs '
              f'{", ".join(names)}) in {time.perf_counter() - start:.1f} s')
        if args.no_check:
            return 0
        result = compare_with_onnxruntime(out, module, x)
    except (FileNotFoundError, ExportError) as err:
        sys.exit(f'error: {err}')
    for r in result['outputs']:
        print(f"{r['name']} {tuple(r['shape'])}: max abs diff "
              f"{r['max_abs']:.3g}, relative {r['max_rel']:.3g}")
    ok = result['max_rel'] <= args.rtol
    print(f"onnxruntime vs PyTorch: max abs diff {result['max_abs']:.3g}, "
          f"max relative diff {result['max_rel']:.3g} "
          f"({'OK' if ok else 'FAIL'}, tolerance {args.rtol:g})")
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
