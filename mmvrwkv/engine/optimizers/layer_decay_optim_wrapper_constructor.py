"""Layer-wise learning-rate decay for any model with a VRWKV backbone."""
from typing import List, Optional

import torch.nn as nn
from mmengine.dist import get_rank
from mmengine.logging import MMLogger
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Give deeper backbone layers larger learning rates (BEiT-style).

    The backbone (``model.backbone``, a :class:`VRWKV` or
    :class:`VRWKVAdapter`) assigns every parameter a layer id with
    ``get_layer_depth``: patch and position embeddings 0, ``layers.i``
    i + 1, everything else (adapter, neck, heads) ``num_layers + 1``. A
    parameter with id ``d`` gets ``lr = base_lr * rate ** (num_layers + 1 -
    d)``. As in the official Vision-RWKV constructor, 1-D parameters and
    biases get no weight decay.

    Works for mmdet detectors, mmseg segmentors and mmpretrain classifiers
    alike (it only needs ``model.backbone``).

    Config::

        optim_wrapper = dict(
            constructor='LayerDecayOptimWrapperConstructor',
            optimizer=dict(type='AdamW', lr=2e-4, weight_decay=0.01),
            paramwise_cfg=dict(layer_decay_rate=0.85))

    ``paramwise_cfg`` keys: ``layer_decay_rate`` (required, in (0, 1]) and
    ``num_layers`` (optional). The depth always comes from the backbone;
    ``num_layers``, which the official configs carry, is only checked
    against it, so a ported config with the wrong depth fails instead of
    silently decaying differently.
    """

    def __init__(self, optim_wrapper_cfg: dict,
                 paramwise_cfg: Optional[dict] = None):
        paramwise_cfg = dict(paramwise_cfg or {})
        unknown = set(paramwise_cfg) - {'layer_decay_rate', 'num_layers'}
        if unknown:
            raise ValueError(f'{type(self).__name__} does not understand '
                             f'paramwise_cfg keys {sorted(unknown)}; it '
                             'takes layer_decay_rate and num_layers')
        rate = paramwise_cfg.get('layer_decay_rate')
        if rate is None or not 0 < rate <= 1:
            raise ValueError('paramwise_cfg.layer_decay_rate must be in '
                             f'(0, 1], got {rate}')
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    def add_params(self, params: List[dict], module: nn.Module,
                   prefix: str = '', **kwargs) -> None:
        backbone = getattr(module, 'backbone', None)
        if not hasattr(backbone, 'get_layer_depth'):
            raise TypeError(
                f'{type(module).__name__} has no backbone with '
                'get_layer_depth(); layer-wise decay needs a VRWKV backbone')
        # mmpretrain's contract: (layer id, num_layers + 2), also for names
        # outside the backbone
        _, total = backbone.get_layer_depth('', 'backbone.')
        expected = self.paramwise_cfg.get('num_layers')
        if expected is not None and expected != total - 2:
            raise ValueError(
                f'paramwise_cfg.num_layers={expected} but the backbone has '
                f'{total - 2} layers (leave num_layers out: the depth is '
                "taken from the backbone's get_layer_depth)")
        rate = self.paramwise_cfg['layer_decay_rate']
        groups = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            layer_id, total = backbone.get_layer_depth(name, 'backbone.')
            no_decay = param.ndim == 1 or name.endswith('.bias')
            key = (layer_id, no_decay)
            if key not in groups:
                scale = rate**(total - 1 - layer_id)
                groups[key] = dict(
                    params=[], lr=self.base_lr * scale,
                    lr_scale=scale)
                if no_decay or self.base_wd is not None:
                    groups[key]['weight_decay'] = \
                        0. if no_decay else self.base_wd
            groups[key]['params'].append(param)
        lines = []
        for (layer_id, no_decay), group in sorted(groups.items()):
            params.append(group)
            lines.append(f'layer {layer_id:>2} '
                         f'{"no_decay" if no_decay else "decay   "} '
                         f'lr_scale {group["lr_scale"]:.4f} '
                         f'({len(group["params"])} params)')
        if get_rank() == 0:
            MMLogger.get_current_instance().info(
                f'Layer-wise lr decay {rate}:\n' + '\n'.join(lines))
