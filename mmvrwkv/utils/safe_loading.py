"""Checkpoint files that load without running pickled code.

mmengine 0.10.7 loads URLs through ``torch.hub.load_state_dict_from_url``,
whose ``weights_only`` defaults to False, so a downloaded ``.pth`` (an
``init_cfg`` pointing at Hugging Face, a ``--checkpoint https://...``) could
run arbitrary code; its local loader relies on torch's default, which the
environment variable ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` turns off.

:func:`load_checkpoint_file` always passes ``weights_only=True``, also reads
``.safetensors`` files and names the file when it cannot be read.
:func:`enable_safe_loading` registers loaders built on it for mmengine's
local, http(s), torchvision, open-mmlab and mmcls schemes through
``CheckpointLoader.register_scheme``, so every place that takes a checkpoint
path (``init_cfg=dict(type='Pretrained')``, ``load_from``, ``--checkpoint``,
the inferencers) uses them. Nothing is registered on import: the paper
configs turn it on with ``CheckpointSafetyHook``, scripts with one call.
mmengine's ``s3://``, ``petrel://`` and ``pavi://`` loaders are left as they
are (they rely on torch's weights-only default).
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

    Besides tensors, a ``.pth`` may hold the types of mmengine checkpoints
    (message hub, numpy arrays), and nothing else.

    Args:
        filename (str): path; ``~`` is expanded.
        map_location: as for :func:`torch.load`. Defaults to None.

    Returns:
        dict: the checkpoint. Files of the InternImage-based official code
        (VRWKV-L) that keep the weights under ``'model'`` also get them
        under ``'state_dict'``, where mmengine looks.

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
    try:
        with allow_mmengine_checkpoints():
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
    if isinstance(checkpoint, dict) and 'state_dict' not in checkpoint \
            and isinstance(checkpoint.get('model'), dict):
        checkpoint = dict(checkpoint, state_dict=checkpoint['model'])
    return checkpoint


def load_url_safely(url: str, model_dir: Optional[str] = None,
                    map_location=None, progress: bool = True) -> dict:
    """Download ``url`` into torch's hub cache (as torch.hub does: a file
    already there is reused) and load it with :func:`load_checkpoint_file`.

    Args:
        url (str): any URL urllib opens (``https://``, ``file://``, ...).
        model_dir (str, optional): where to keep the file. Defaults to
            ``<torch.hub.get_dir()>/checkpoints``.
        map_location: as for :func:`torch.load`. Defaults to None.
        progress (bool): show a progress bar. Defaults to True.
    """
    if model_dir is None:
        model_dir = osp.join(torch.hub.get_dir(), 'checkpoints')
    os.makedirs(model_dir, exist_ok=True)
    cached = osp.join(model_dir, osp.basename(urlparse(url).path))
    if not osp.exists(cached):
        torch.hub.download_url_to_file(url, cached, None, progress=progress)
    return load_checkpoint_file(cached, map_location)


# The loaders below take the place of mmengine's for their schemes. mmengine
# logs the loader's name from its 11th character ("Loads checkpoint by
# safe_http backend"), hence the ``load_from_`` prefix.


def load_from_safe_local(filename: str, map_location=None) -> dict:
    """The ``''`` scheme (local paths): :func:`load_checkpoint_file`."""
    return load_checkpoint_file(filename, map_location)


def load_from_safe_http(filename: str, map_location=None,
                        model_dir: Optional[str] = None,
                        progress: bool = os.isatty(0)) -> dict:
    """``http://`` and ``https://``: as mmengine's loader (rank 0 downloads,
    the other ranks wait and read the cached file), weights only."""
    from mmengine.dist import get_dist_info
    rank, world_size = get_dist_info()
    if rank == 0:
        checkpoint = load_url_safely(filename, model_dir, map_location,
                                     progress)
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            checkpoint = load_url_safely(filename, model_dir, map_location,
                                         progress)
    return checkpoint


def load_from_safe_torchvision(filename: str, map_location=None) -> dict:
    """``torchvision://NAME`` (and the deprecated ``modelzoo://NAME``)."""
    from mmengine.runner.checkpoint import get_torchvision_models
    name = filename.split('://', 1)[1]
    return load_from_safe_http(get_torchvision_models()[name], map_location)


def load_from_safe_openmmlab(filename: str, map_location=None) -> dict:
    """``open-mmlab://NAME`` and ``openmmlab://NAME``: mmengine's table of
    URLs (deprecated names mapped to their successors), or a file under
    mmengine's home for entries that are not URLs."""
    from mmengine.runner.checkpoint import (_get_mmengine_home,
                                            get_deprecated_model_names,
                                            get_external_models)
    name = filename.split('://', 1)[1]
    name = get_deprecated_model_names().get(name, name)
    url = get_external_models()[name]
    if url.startswith(('http://', 'https://')):
        return load_from_safe_http(url, map_location)
    return load_checkpoint_file(osp.join(_get_mmengine_home(), url),
                                map_location)


def load_from_safe_mmcls(filename: str, map_location=None) -> dict:
    """``mmcls://NAME``: an mmcls 0.x classifier, its backbone's weights."""
    from mmengine.runner.checkpoint import (_process_mmcls_checkpoint,
                                            get_mmcls_models)
    name = filename.split('://', 1)[1]
    checkpoint = load_from_safe_http(get_mmcls_models()[name], map_location)
    return _process_mmcls_checkpoint(checkpoint)


# mmengine's prefixes -> our loader; every one of mmengine's loaders for
# these ends in torch.load without weights_only=True.
SAFE_SCHEMES = {
    '': load_from_safe_local,
    ('http://', 'https://'): load_from_safe_http,
    ('modelzoo://', 'torchvision://'): load_from_safe_torchvision,
    ('open-mmlab://', 'openmmlab://'): load_from_safe_openmmlab,
    'mmcls://': load_from_safe_mmcls,
}


def enable_safe_loading() -> None:
    """Load every checkpoint of this process through mmvrwkv's loaders.

    Registers them with ``CheckpointLoader.register_scheme(..., force=True)``
    for mmengine's local, http(s), torchvision/modelzoo, open-mmlab and
    mmcls schemes (see ``SAFE_SCHEMES``): weights only, ``.safetensors``
    accepted, unreadable files named. It stays on for the rest of the
    process; calling it again changes nothing. ``CheckpointSafetyHook``
    calls it when a run starts.
    """
    from mmengine.runner import CheckpointLoader
    for prefixes, loader in SAFE_SCHEMES.items():
        CheckpointLoader.register_scheme(prefixes, loader, force=True)
