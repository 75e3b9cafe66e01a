"""Wrap a model for data-parallel training on CPU processes."""
from typing import Optional

import torch.nn as nn
from mmengine.model import convert_sync_batchnorm
from mmengine.registry import MODEL_WRAPPERS

from .cpu_sync_bn import convert_to_cpu_sync_bn


def wrap_cpu_ddp(model: nn.Module,
                 model_wrapper_cfg: Optional[dict] = None,
                 sync_bn: Optional[str] = None,
                 find_unused_parameters: bool = False) -> nn.Module:
    """The model in ``MMDistributedDataParallel`` on the CPU.

    A CPU module cannot have DDP's ``device_ids``, and torch's SyncBN
    rejects CPU tensors, so SyncBN layers (those of the config, plus every
    BN when ``sync_bn`` is set, as mmengine's Runner does) become
    :class:`~mmvrwkv.engine.distributed.CPUSyncBatchNorm`.

    Args:
        model (nn.Module): the model, on the CPU after this call.
        model_wrapper_cfg (dict, optional): the config's
            ``model_wrapper_cfg``, merged over the defaults
            (``broadcast_buffers=False``, ``find_unused_parameters``).
        sync_bn (str, optional): the config's ``sync_bn`` ('torch' or
            'mmcv'): convert BN layers to SyncBN first. Defaults to None.
        find_unused_parameters (bool): passed to DDP. Defaults to False.

    Returns:
        nn.Module: the wrapped model.
    """
    model = model.to('cpu')
    if sync_bn is not None:
        model = convert_sync_batchnorm(model, sync_bn)
    model = convert_to_cpu_sync_bn(model)
    cfg = dict(type='MMDistributedDataParallel', broadcast_buffers=False,
               find_unused_parameters=find_unused_parameters)
    cfg.update(model_wrapper_cfg or {})
    return MODEL_WRAPPERS.build(cfg, default_args=dict(module=model))
