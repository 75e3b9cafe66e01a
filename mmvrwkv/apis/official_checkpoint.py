"""Official Vision-RWKV checkpoints, made loadable into this package's models.

What differs between the released files and our models (read from
OpenGVLab/Vision-RWKV and the mmdet 2.x / mmseg 0.x / mmcls 0.x sources):

- Nesting: mmcv 1.x runners save ``{'state_dict', 'meta', 'optimizer'}``,
  the InternImage-based code that trained VRWKV-L saves ``'state_dict'`` or
  ``'model'`` next to optimizer, EMA and config entries; DDP-wrapped saves
  prefix every key with ``module.``.
- Classification head: VRWKV-T/S/B (mmcls 0.x ``LinearClsHead``) use
  ``head.fc.*``, as mmpretrain 1.x does. VRWKV-L's head is an
  ``nn.Sequential(Linear, Tanh, Linear)`` (``head.0.*``, ``head.2.*``), which
  is mmpretrain's ``VisionTransformerClsHead`` with ``hidden_dim`` and a Tanh
  (``head.layers.pre_logits.*``, ``head.layers.head.*``).
- Backbone, adapter, FPN, RPN, RoI heads, UperNet and FCN heads: the
  parameter names of mmdet 2.x and mmseg 0.x Mask R-CNN / UperNet are those
  of mmdet 3.x / mmseg 1.x (which load their 2.x/0.x model-zoo files
  unchanged), and our backbone and adapter use the official names. These
  keys pass through; the shape check against the target model is what
  guarantees they fit.
- ``meta['CLASSES']`` / ``meta['PALETTE']`` become mmengine's
  ``meta['dataset_meta']`` (``classes``, ``palette``), which the mm
  inferencers read.
"""
import os
import os.path as osp
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.runner.checkpoint import load_state_dict

from ..models.backbones import VRWKV
from ..utils import config_path, load_checkpoint_file, save_safetensors
from .model_builder import build_model

KINDS = ('cls', 'det', 'seg')
# present in every VRWKV backbone and in no other model we know of
_MARKER = re.compile(r'^backbone\.layers\.\d+\.att\.spatial_decay$')
_CONTAINERS = ('state_dict', 'model', 'module')
_CLS_HEAD_RENAMES = (
    ('head.0.', 'head.layers.pre_logits.'),   # VRWKV-L MLP head
    ('head.2.', 'head.layers.head.'),
)


@dataclass
class Conversion:
    """The result of :func:`convert_official`.

    Attributes:
        state_dict: keys and tensors for this package's model.
        kind: 'cls', 'det' or 'seg'.
        arch: the backbone preset ('tiny', 'small', 'base', 'large') or
            'custom' when embed_dims/num_layers match none.
        embed_dims, num_layers: read from the tensors.
        container: where the weights were found ('state_dict', 'model',
            'module' or None for a bare state dict).
        renamed: (old, new) key pairs.
        stripped_module: how many keys lost a DDP ``module.`` prefix.
        meta: mmengine-style meta (``dataset_meta`` and the provenance).
    """
    state_dict: Dict[str, torch.Tensor]
    kind: str
    arch: str
    embed_dims: int
    num_layers: int
    container: Optional[str]
    renamed: List[Tuple[str, str]] = field(default_factory=list)
    stripped_module: int = 0
    meta: dict = field(default_factory=dict)


def find_state_dict(checkpoint: dict) -> Tuple[dict, Optional[str]]:
    """The weights inside a loaded checkpoint and the key they sat under."""
    if not isinstance(checkpoint, dict):
        raise ValueError(f'expected a checkpoint dict, got '
                         f'{type(checkpoint).__name__}')
    for key in _CONTAINERS:
        if isinstance(checkpoint.get(key), dict):
            return checkpoint[key], key
    if checkpoint and all(isinstance(v, torch.Tensor)
                          for v in checkpoint.values()):
        return checkpoint, None
    raise ValueError(
        'no weights found: the file has neither a state_dict/model/module '
        'entry nor only tensors (top-level keys: '
        f'{sorted(map(str, checkpoint))[:10]})')


def strip_module_prefix(state_dict: dict) -> Tuple[dict, int]:
    """Remove DDP's ``module.`` prefixes. Returns the dict and how many keys
    had one."""
    out, count = {}, 0
    for key, value in state_dict.items():
        while key.startswith('module.'):
            key, count = key[len('module.'):], count + 1
        out[key] = value
    return out, count


def check_vrwkv(state_dict: dict) -> None:
    """Refuse files that are not a VRWKV model with a ``backbone.``."""
    if any(_MARKER.match(k) for k in state_dict):
        return
    sample = ', '.join(sorted(state_dict)[:5])
    if any(k.startswith('layers.0.att.spatial_decay') for k in state_dict):
        raise ValueError(
            'this is a bare VRWKV backbone (keys start with layers., not '
            'backbone.layers.): use it directly as '
            "init_cfg=dict(type='Pretrained', checkpoint=PATH) of the "
            'backbone instead of converting it')
    if any(re.match(r'(backbone\.)?layers\.\d+\.att\.time_decay', k)
           for k in state_dict):
        raise ValueError(
            'this is a VRWKV6 checkpoint: the official VRWKV6 names are '
            'ours, so it needs no conversion; load it as it is '
            "(load_from=PATH, or init_cfg=dict(type='Pretrained', "
            "checkpoint=PATH) with prefix='backbone.' for a backbone)")
    raise ValueError(
        'not a Vision-RWKV checkpoint: no backbone.layers.N.att.'
        f'spatial_decay among its {len(state_dict)} keys (first: '
        f'{sample})')


def detect_kind(state_dict: dict) -> str:
    """'det' (Mask R-CNN), 'seg' (UperNet) or 'cls' from the head keys."""
    if any(k.startswith(('rpn_head.', 'roi_head.')) for k in state_dict):
        return 'det'
    if any(k.startswith('decode_head.') for k in state_dict):
        return 'seg'
    if any(k.startswith('head.') for k in state_dict):
        return 'cls'
    raise ValueError(
        'cannot tell the model from the keys: no rpn_head/roi_head (Mask '
        'R-CNN), decode_head (UperNet) or head (classifier). A backbone-only '
        "file initialises models through init_cfg=dict(type='Pretrained', "
        "checkpoint=PATH, prefix='backbone.') without conversion")


def detect_arch(state_dict: dict) -> Tuple[str, int, int]:
    """(preset name or 'custom', embed_dims, num_layers) of the backbone."""
    embed_dims = state_dict['backbone.pos_embed'].shape[-1]
    num_layers = 1 + max(
        int(k.split('.')[2]) for k in state_dict if _MARKER.match(k))
    for name, arch in VRWKV.arch_zoo.items():
        if len(name) > 1 and (arch['embed_dims'], arch['num_layers']) == (
                embed_dims, num_layers):
            return name, embed_dims, num_layers
    return 'custom', embed_dims, num_layers


def _rename(state_dict: dict, rules) -> Tuple[dict, List[Tuple[str, str]]]:
    out, renamed = {}, []
    for key, value in state_dict.items():
        new = key
        for old_prefix, new_prefix in rules:
            if key.startswith(old_prefix):
                new = new_prefix + key[len(old_prefix):]
                break
        if new != key:
            renamed.append((key, new))
        out[new] = value
    return out, renamed


def _cls_rules(state_dict: dict):
    rules = list(_CLS_HEAD_RENAMES)
    # a bare nn.Linear head (the InternImage-code classifier below 13
    # layers) is mmpretrain's LinearClsHead
    if 'head.weight' in state_dict:
        rules += [('head.weight', 'head.fc.weight'),
                  ('head.bias', 'head.fc.bias')]
    return rules


def _dataset_meta(meta: dict) -> dict:
    """mmcv 1.x meta (CLASSES, PALETTE) -> mmengine dataset_meta."""
    if isinstance(meta.get('dataset_meta'), dict):
        return dict(meta['dataset_meta'])
    out = {}
    if meta.get('CLASSES') is not None:
        out['classes'] = list(meta['CLASSES'])
    if meta.get('PALETTE') is not None:
        out['palette'] = [list(c) for c in meta['PALETTE']]
    return out


def convert_official(checkpoint: dict, kind: str = 'auto',
                     source: str = '') -> Conversion:
    """Turn a loaded official checkpoint into our model's state dict.

    Args:
        checkpoint: what ``torch.load`` returned.
        kind: 'auto', 'cls', 'det' or 'seg'.
        source: file name, recorded in the meta.

    Raises:
        ValueError: not a VRWKV checkpoint, or ``kind`` contradicts the
            head keys.
    """
    if kind not in ('auto', ) + KINDS:
        raise ValueError(f'kind {kind!r} is not one of: auto, '
                         + ', '.join(KINDS))
    state_dict, container = find_state_dict(checkpoint)
    state_dict, stripped = strip_module_prefix(state_dict)
    check_vrwkv(state_dict)
    found = detect_kind(state_dict)
    if kind != 'auto' and kind != found:
        raise ValueError(f'--kind {kind} was asked for, but the keys are '
                         f'those of a {found} model; use --kind {found} or '
                         'auto')
    arch, embed_dims, num_layers = detect_arch(state_dict)
    renamed = []
    if found == 'cls':
        state_dict, renamed = _rename(state_dict, _cls_rules(state_dict))
    meta = dict(
        converted_from=source, kind=found, arch=arch,
        converter='mmvrwkv tools/convert_official.py')
    old_meta = checkpoint.get('meta') if container else None
    dataset_meta = _dataset_meta(old_meta if isinstance(old_meta, dict)
                                 else {})
    if dataset_meta:
        meta['dataset_meta'] = dataset_meta
    return Conversion(
        state_dict=state_dict, kind=found, arch=arch, embed_dims=embed_dims,
        num_layers=num_layers, container=container, renamed=renamed,
        stripped_module=stripped, meta=meta)


def compare_shapes(state_dict: dict, model: nn.Module) -> List[str]:
    """Problems that would stop ``model.load_state_dict(state_dict,
    strict=True)``: missing and unexpected keys, shape mismatches. A position
    embedding of another square grid is fine (the backbone resizes it on
    load). Works on models built on the 'meta' device
    (:func:`~mmvrwkv.apis.build_model` with ``device='meta'``)."""
    expected = model.state_dict()
    problems = []
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing:
        problems.append(f'{len(missing)} keys of the model are not in the '
                        f'file, e.g. {missing[:4]}')
    if unexpected:
        problems.append(f'{len(unexpected)} keys of the file are not in '
                        f'the model, e.g. {unexpected[:4]}')
    for key in sorted(set(expected) & set(state_dict)):
        want, got = tuple(expected[key].shape), tuple(state_dict[key].shape)
        if want == got:
            continue
        if key.endswith('pos_embed') and len(got) == 3 and \
                got[2] == want[2] and int(got[1]**0.5)**2 == got[1]:
            continue
        problems.append(f'{key}: {got} in the file, {want} in the model')
    return problems


SHORT = dict(tiny='t', small='s', base='b', large='l')


def default_config(kind: str, arch: str) -> str:
    """The config of this package for a released checkpoint of ``kind``
    ('cls', 'det', 'seg') and backbone preset ``arch``.

    Raises:
        ValueError: ``arch`` is no preset.
    """
    if arch not in SHORT:
        raise ValueError(f'the backbone is no preset ({arch}): pass the '
                         '--config of a model with this architecture')
    s = SHORT[arch]
    name = dict(cls=f'vrwkv_{s}_in1k.py' if s != 'l' else
                'vrwkv_l_in1k_384.py',
                det=f'mask_rcnn_vrwkv_{s}.py',
                seg=f'upernet_vrwkv_{s}.py')[kind]
    return config_path(name)


def convert_file(src: str, dst: str, kind: str = 'auto',
                 config: Optional[str] = None,
                 cfg_options: Optional[dict] = None
                 ) -> Tuple[Conversion, str]:
    """Convert the official checkpoint file ``src`` and write ``dst``
    (``{'state_dict', 'meta'}`` as ``.pth``, or ``.safetensors``), after
    checking every key and shape against the model of ``config`` (default:
    this package's config of the kind and preset found).

    Returns:
        tuple: the :class:`Conversion` and the config it was checked
        against.

    Raises:
        ValueError: ``dst`` is ``src``; not a VRWKV checkpoint; the weights
            do not fit the model of the config (the message lists the
            mismatches).
        RuntimeError, FileNotFoundError: ``src`` cannot be read.
    """
    if osp.abspath(src) == osp.abspath(dst):
        raise ValueError('refusing to overwrite the source file: choose '
                         'another DST')
    checkpoint = load_checkpoint_file(src, map_location='cpu')
    conv = convert_official(checkpoint, kind, source=osp.basename(src))
    config = config or default_config(conv.kind, conv.arch)
    # on the 'meta' device: names and shapes, no memory, no download
    skeleton = build_model(config, cfg_options, device='meta')
    problems = compare_shapes(conv.state_dict, skeleton)
    if problems:
        raise ValueError(
            f'{src} does not fit the model of {config} (VRWKV {conv.arch}, '
            f'{conv.kind}):\n  ' + '\n  '.join(problems)
            + '\nPick the config of this checkpoint with --config (and '
            '--cfg-options for e.g. num_classes).')
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    if dst.endswith('.safetensors'):
        save_safetensors(conv.state_dict, dst, conv.meta)
    else:
        torch.save(dict(state_dict=conv.state_dict, meta=conv.meta), dst)
    return conv, config


def load_weights(model: nn.Module, checkpoint: str,
                 backbone_only: bool = False) -> None:
    """Load ``checkpoint`` (weights only: ``.pth`` or ``.safetensors``, any
    nesting, DDP prefixes stripped) into ``model``, strictly; with
    ``backbone_only``, the ``backbone.`` part of a full-model checkpoint.

    Raises:
        RuntimeError, FileNotFoundError: the file cannot be read (or would
            run pickled code).
        ValueError: no weights in it, or they do not match the model (the
            message lists the differences).
    """
    loaded = load_checkpoint_file(checkpoint, map_location='cpu')
    try:
        state_dict, _ = find_state_dict(loaded)
    except ValueError as err:
        raise ValueError(f'{checkpoint}: {err}') from err
    state_dict, _ = strip_module_prefix(state_dict)
    if backbone_only and any(k.startswith('backbone.') for k in state_dict):
        state_dict = {k[len('backbone.'):]: v for k, v in state_dict.items()
                      if k.startswith('backbone.')}
    problems = compare_shapes(state_dict, model)
    if problems:
        raise ValueError(
            f'checkpoint {checkpoint} does not match the model of the '
            'config' + (' (backbone)' if backbone_only else '') + ': '
            + '; '.join(problems))
    load_state_dict(model, state_dict, strict=True)
