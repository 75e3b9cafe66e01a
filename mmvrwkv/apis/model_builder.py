"""Build the model of an OpenMMLab config in the config's scope."""
import copy
import importlib
from contextlib import nullcontext
from typing import Optional, Union

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope


def load_config(config: Union[str, Config],
                cfg_options: Optional[dict] = None) -> Config:
    """A config file read (or a Config copied), ``cfg_options`` merged in
    (``--cfg-options`` style keys, e.g. ``{'model.head.num_classes': 5}``).
    """
    cfg = Config.fromfile(config) if isinstance(config, str) else \
        copy.deepcopy(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def enter_scope(cfg: Config) -> Optional[str]:
    """Register the modules of the config's ``default_scope`` package
    (mmdet, mmseg, mmpretrain, ...) and make it the default scope, as the
    host libraries' tools do, so the config's type names resolve.

    Returns:
        str | None: the scope, or None when the config names none.
    """
    scope = cfg.get('default_scope')
    if not scope:
        return None
    try:
        utils = importlib.import_module(f'{scope}.utils')
    except ImportError:
        utils = None
    register = getattr(utils, 'register_all_modules', None)
    if register is not None:
        register(init_default_scope=False)
    init_default_scope(scope)
    return scope


def without_init_cfg(cfg):
    """A copy of a model config with every ``init_cfg`` and ``pretrained``
    removed, so that ``init_weights`` would download and load nothing."""
    if isinstance(cfg, dict):
        return type(cfg)({k: without_init_cfg(v) for k, v in cfg.items()
                          if k not in ('init_cfg', 'pretrained')})
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(without_init_cfg(v) for v in cfg)
    return cfg


def build_model(config: Union[str, Config],
                cfg_options: Optional[dict] = None,
                backbone_only: bool = False,
                init_cfg: bool = True,
                data_preprocessor: bool = True,
                device: Union[str, torch.device, None] = None) -> nn.Module:
    """The model (``cfg.model``) of a config, built in the config's scope.

    Building neither initialises weights nor downloads anything; the model
    is in training mode, as ``MODELS.build`` returns it.

    Args:
        config (str | Config): config file or Config (not modified).
        cfg_options (dict, optional): overrides merged into the config.
            Defaults to None.
        backbone_only (bool): build ``cfg.model.backbone`` alone. Defaults
            to False.
        init_cfg (bool): keep ``init_cfg`` / ``pretrained`` entries; False
            removes them everywhere in the model config (then
            ``init_weights`` gives the random initialisation). Defaults to
            True.
        data_preprocessor (bool): build the model with the config's data
            preprocessor (``model.data_preprocessor``, else the top-level
            ``data_preprocessor``, as mmengine's Runner does); False builds
            it without (the model's default, no normalisation). Defaults to
            True.
        device (str | torch.device, optional): device the parameters are
            created on; 'meta' builds a skeleton of names and shapes without
            memory. Defaults to None (torch's default device).

    Returns:
        nn.Module: the model.

    Raises:
        KeyError: the config has no ``model`` (or no ``model.backbone``
            with ``backbone_only``).
    """
    cfg = load_config(config, cfg_options)
    if 'model' not in cfg:
        raise KeyError(f'config {cfg.filename or config} has no model')
    model_cfg = copy.deepcopy(cfg.model)
    if backbone_only:
        if 'backbone' not in model_cfg:
            raise KeyError(f'the model of {cfg.filename or config} has no '
                           'backbone')
        model_cfg = model_cfg['backbone']
    elif not data_preprocessor:
        model_cfg.pop('data_preprocessor', None)
    elif cfg.get('data_preprocessor') is not None:
        # mmpretrain configs keep it at the top level, where mmengine's
        # Runner takes it from
        model_cfg.setdefault('data_preprocessor',
                             copy.deepcopy(cfg.data_preprocessor))
    if not init_cfg:
        model_cfg = without_init_cfg(model_cfg)
    enter_scope(cfg)
    with torch.device(device) if device is not None else nullcontext():
        return MODELS.build(model_cfg)
