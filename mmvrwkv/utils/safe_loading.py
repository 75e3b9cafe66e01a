"""Checkpoint files that load without running pickled code.

Two holes close here. mmengine 0.10.7 loads URLs through
``torch.hub.load_state_dict_from_url``, whose ``weights_only`` defaults to
False, so a downloaded ``.pth`` (an ``init_cfg`` pointing at Hugging Face, a
``--checkpoint https://...``) could run arbitrary code; and its local loader
relies on torch's default, which an environment variable can turn off. We
route both through :func:`load_checkpoint_file`, which always passes
``weights_only=True`` and also reads ``.safetensors`` files, so every place
that takes a checkpoint path (``init_cfg=dict(type='Pretrained')``,
``load_from``, ``mim test --checkpoint``, the inferencers) accepts them.
"""
import json
import os
import os.path as osp
import pickle
import zipfile
from typing import Optional
from urllib.parse import urlparse

import torch

from .checkpoint import allow_mmengine_checkpoints

SAFETENSORS_SUFFIX = '.safetensors'
# safetensors metadata is str -> str; the checkpoint's ``meta`` dict (class
# names, palette, ...) travels as JSON under this key.
META_KEY = 'mmvrwkv_meta'

_registered = False


def _device(map_location) -> str:
    """A device string for safetensors from torch.load's map_location."""
    if isinstance(map_location, (str, torch.device)):
        return str(map_location)
    return 'cpu'  # None, dicts and callables: load on the CPU, as torch does


def load_safetensors(filename: str, map_location=None) -> dict:
    """Read a ``.safetensors`` file as an mmengine checkpoint.

    Returns:
        dict: ``{'state_dict': tensors, 'meta': meta}`` when the file carries
        mmvrwkv metadata (written by :func:`save_safetensors`), else the
        tensors themselves (mmengine accepts a bare state dict).
    """
    from safetensors import safe_open
    tensors = {}
    with safe_open(filename, framework='pt',
                   device=_device(map_location)) as f:
        metadata = f.metadata() or {}
        for key in f.keys():
            tensors[key] = f.get_tensor(key)
    if META_KEY in metadata:
        return dict(state_dict=tensors, meta=json.loads(metadata[META_KEY]))
    return tensors


def save_safetensors(state_dict: dict, filename: str,
                     meta: Optional[dict] = None) -> None:
    """Write a state dict (and a JSON-serialisable ``meta``) as safetensors.

    Tensors that share storage are cloned, since the format stores each
    tensor on its own.
    """
    from safetensors.torch import save_file
    seen, tensors = set(), {}
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f'state_dict[{key!r}] is a {type(value).__name__}'
                            ', not a tensor; safetensors holds tensors only')
        ptr = value.untyped_storage().data_ptr() if value.numel() else None
        if ptr is not None and ptr in seen:
            value = value.clone()
        seen.add(ptr)
        tensors[key] = value.detach().contiguous()
    metadata = {META_KEY: json.dumps(meta)} if meta is not None else None
    save_file(tensors, filename, metadata=metadata)


def load_checkpoint_file(filename: str, map_location=None) -> dict:
    """Load a local ``.pth`` (weights only) or ``.safetensors`` checkpoint.

    Raises:
        FileNotFoundError: no such file.
        RuntimeError: the file holds pickled objects that weights-only
            loading refuses, or is truncated or not a checkpoint (the
            message names the file and the fix).
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} does not exist')
    if filename.endswith(SAFETENSORS_SUFFIX):
        return load_safetensors(filename, map_location)
    allow_mmengine_checkpoints()
    try:
        checkpoint = torch.load(filename, map_location=map_location,
                                weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, KeyError,
            zipfile.BadZipFile) as err:
        message = str(err).strip()
        reason = (message.splitlines() or [''])[0]
        # A real checkpoint that stores other Python types; garbage bytes
        # fail in the same unpickler with "Unsupported operand" instead.
        refused = [line.strip() for line in message.splitlines()
                   if 'Unsupported global' in line]
        if refused:
            reason = refused[0]
            raise RuntimeError(
                f'{filename} holds pickled Python objects beyond tensors and '
                f'the types of mmengine checkpoints, so it is not loaded '
                f'({reason}). mmvrwkv never runs code stored in a checkpoint.'
                ' If you trust the file, keep only its weights: torch.save('
                "torch.load(SRC, weights_only=False)['state_dict'], DST)"
            ) from err
        # torch's own messages ("failed finding central directory",
        # "KeyError: 101") name neither the file nor the cause.
        raise RuntimeError(
            f'{filename} ({osp.getsize(filename)} bytes) is not a readable '
            f'PyTorch checkpoint ({type(err).__name__}: {reason}). It is '
            'truncated (an interrupted download or copy) or not a checkpoint '
            'at all: download or copy it again, or point to another file.'
        ) from err
    # Files of the InternImage-based code (VRWKV-L) may keep the weights
    # under 'model'; mmengine looks for 'state_dict' (init_cfg with prefix).
    if isinstance(checkpoint, dict) and 'state_dict' not in checkpoint \
            and isinstance(checkpoint.get('model'), dict):
        checkpoint = dict(checkpoint, state_dict=checkpoint['model'])
    return checkpoint


def load_url_safely(url: str, model_dir: Optional[str] = None,
                    map_location=None, progress: bool = True,
                    **kwargs) -> dict:
    """Download ``url`` into torch's hub cache (as torch.hub does) and load
    it with :func:`load_checkpoint_file`. Same signature as mmengine's
    ``load_url``; extra torch.hub arguments are accepted and ignored."""
    if model_dir is None:
        model_dir = osp.join(torch.hub.get_dir(), 'checkpoints')
    os.makedirs(model_dir, exist_ok=True)
    cached = osp.join(model_dir, osp.basename(urlparse(url).path))
    if not osp.exists(cached):
        torch.hub.download_url_to_file(url, cached, None, progress=progress)
    return load_checkpoint_file(cached, map_location)


def register_safe_loading() -> None:
    """Make mmengine load local files and URLs through
    :func:`load_checkpoint_file`. Idempotent; called on ``import mmvrwkv``.
    """
    global _registered
    if _registered:
        return
    from mmengine.runner import checkpoint as mm_checkpoint

    # '' is mmengine's fallback scheme, used for every local path.
    mm_checkpoint.CheckpointLoader.register_scheme(
        prefixes='', loader=load_checkpoint_file, force=True)
    # http(s)://, torchvision://, open-mmlab:// and mmcls:// all end in
    # mmengine's module-level load_url.
    mm_checkpoint.load_url = load_url_safely
    _registered = True
