"""The ViT-Adapter on a Vision-RWKV backbone (VRWKV or VRWKV6): a
multi-scale backbone for detection and segmentation (Mask R-CNN + FPN,
UperNet)."""
import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.model.weight_init import trunc_normal_

from mmvrwkv.ops import MS_DEFORM_ATTN_BACKENDS
from .adapter_modules import (DeformInputs, InteractionBlock,
                              SpatialPriorModule, tokens_to_map)
from .base_vrwkv import VisionRWKVBase
from .deform_attn import DeformableAttention

# The adapter settings of the official detection and segmentation models
# (detection/configs/mask_rcnn/*, segmentation/configs/ade20k/*), per
# backbone size. The adapters add them to their backbone's presets with
# base_vrwkv.extend_presets.
ADAPTER_PRESETS: Dict[str, dict] = {
    **dict.fromkeys(['t', 'tiny'], dict(
        deform_num_heads=6, deform_ratio=1.0,
        interaction_indexes=[[0, 2], [3, 5], [6, 8], [9, 11]])),
    **dict.fromkeys(['s', 'small'], dict(
        deform_num_heads=6, deform_ratio=1.0,
        interaction_indexes=[[0, 2], [3, 5], [6, 8], [9, 11]])),
    **dict.fromkeys(['b', 'base'], dict(
        deform_num_heads=12, deform_ratio=0.5,
        interaction_indexes=[[0, 2], [3, 5], [6, 8], [9, 11]])),
    **dict.fromkeys(['l', 'large'], dict(
        deform_num_heads=16, deform_ratio=0.5,
        interaction_indexes=[[0, 5], [6, 11], [12, 17], [18, 23]])),
}


class ViTAdapterMixin:
    """The ViT-Adapter (Chen et al., ICLR 2023) around a Vision-RWKV
    backbone; mixed in before the backbone class, e.g.
    ``class VRWKVAdapter(ViTAdapterMixin, VRWKV)``.

    The plain backbone runs unchanged; a convolutional spatial prior
    module (SPM) provides features at strides 8/16/32 that are injected into
    the tokens before each group of layers and updated from them after it
    (deformable cross-attention). Returns four (B, embed_dims, H/s, W/s) maps
    for s = 4, 8, 16, 32, batch-normalised, for an FPN or UperNet.

    Inputs of any size are zero-padded (right/bottom) to a multiple of 32;
    the mm data preprocessors (``pad_size_divisor=32``, crop size) already do.

    The arch presets carry the adapter settings ``deform_num_heads``,
    ``deform_ratio`` and ``interaction_indexes`` beside the backbone's; a
    custom arch dict may hold them too, or they are given as arguments.

    Args:
        arch (str | dict): a preset of the class's ``arch_zoo`` or a dict.
            Defaults to 'tiny'.
        conv_inplane (int): SPM width. Defaults to 64.
        n_points (int): sampling points per head and level. Defaults to 4.
        deform_num_heads (int, optional): deformable-attention heads;
            None takes the arch's. Defaults to None.
        deform_ratio (float, optional): value-projection width /
            embed_dims; None takes the arch's. Defaults to None.
        interaction_indexes (list[list[int]], optional): first and last
            backbone layer of each interaction block; None takes the
            arch's. Defaults to None.
        init_values_inject (float): initial injector gamma. Defaults to 0.
        with_cffn (bool): ConvFFN in the extractors. Defaults to True.
        cffn_ratio (float): ConvFFN width. Defaults to 0.25.
        use_extra_extractor (bool): two more extractors after the last
            block. Defaults to True.
        vrwkv_feature (str, optional): add the backbone's feature maps,
            resized, to the four outputs: 'final' adds the last layer's map
            to every level (the official detection model),
            'per_interaction' adds the map after interaction block i to
            level i (the official segmentation model), None adds nothing.
            Defaults to 'final'.
        deform_attn_backend (str): backend of the deformable sampling
            (:func:`mmvrwkv.ops.ms_deform_attn`): 'auto' (mmcv's CUDA
            kernel on GPUs, standard operators elsewhere), 'compiled' or
            'reference' (standard operators everywhere). Defaults to 'auto'.
        norm_cfg (dict): norm of the SPM and the four outputs. The official
            models use SyncBN; the default BN works in any process, and
            ``sync_bn='torch'`` in a config converts it when training is
            distributed. Defaults to ``dict(type='BN')``.
        **kwargs: the backbone's arguments (img_size, patch_size,
            drop_path_rate, init_values, with_cp, init_cfg, ...; see
            :class:`VisionRWKVBase`) except out_indices, out_type and
            final_norm. ``drop_path_rate`` also sets, undecayed, the
            stochastic depth of every extractor's ConvFFN.
    """
    FEATURE_MODES = ('final', 'per_interaction', None)
    ADAPTER_KEYS = ('deform_num_heads', 'deform_ratio', 'interaction_indexes')
    _ARCH_OPTIONAL = {**VisionRWKVBase._ARCH_OPTIONAL,
                      **dict.fromkeys(ADAPTER_KEYS)}
    size_divisor = 32

    def __init__(self,
                 arch='tiny',
                 conv_inplane: int = 64,
                 n_points: int = 4,
                 deform_num_heads: Optional[int] = None,
                 deform_ratio: Optional[float] = None,
                 interaction_indexes: Optional[Sequence[Sequence[int]]] = None,
                 init_values_inject: float = 0.,
                 with_cffn: bool = True,
                 cffn_ratio: float = 0.25,
                 use_extra_extractor: bool = True,
                 vrwkv_feature: Optional[str] = 'final',
                 deform_attn_backend: str = 'auto',
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 **kwargs):
        for name in ('out_indices', 'out_type', 'final_norm'):
            if name in kwargs:
                raise TypeError(f'{type(self).__name__} always returns four '
                                f'maps; it takes no {name!r}')
        super().__init__(arch=arch, final_norm=False, **kwargs)
        self._override_arch(dict(
            deform_num_heads=deform_num_heads, deform_ratio=deform_ratio,
            interaction_indexes=interaction_indexes))
        missing = [k for k in self.ADAPTER_KEYS
                   if self.arch_settings.get(k) is None]
        if missing:
            raise ValueError(
                f'{type(self).__name__} needs {", ".join(missing)}: give '
                'them as arguments or in the arch dict (the presets have '
                'them)')
        self.interaction_indexes = self._check_indexes(
            self.arch_settings['interaction_indexes'])
        if vrwkv_feature not in self.FEATURE_MODES:
            raise ValueError(f'vrwkv_feature {vrwkv_feature!r} is not one '
                             f'of {self.FEATURE_MODES}')
        if vrwkv_feature == 'per_interaction' and \
                len(self.interaction_indexes) != 4:
            raise ValueError(
                "vrwkv_feature='per_interaction' adds the map after block i "
                'to output level i, so it needs 4 interaction blocks, got '
                f'{len(self.interaction_indexes)}')
        self.vrwkv_feature = vrwkv_feature
        MS_DEFORM_ATTN_BACKENDS.check_name(deform_attn_backend)
        dims = self.embed_dims

        self.level_embed = nn.Parameter(torch.zeros(3, dims))
        self.spm = SpatialPriorModule(conv_inplane, dims, norm_cfg,
                                      self.with_cp)
        last = len(self.interaction_indexes) - 1
        self.interactions = nn.Sequential(*[
            InteractionBlock(
                dims=dims,
                num_heads=self.arch_settings['deform_num_heads'],
                num_points=n_points,
                deform_ratio=self.arch_settings['deform_ratio'],
                with_cffn=with_cffn,
                cffn_ratio=cffn_ratio,
                drop=0.,
                drop_path=self.drop_path_rate,
                init_values=init_values_inject,
                extra_extractor=use_extra_extractor and i == last,
                with_cp=self.with_cp,
                deform_attn_backend=deform_attn_backend)
            for i in range(len(self.interaction_indexes))
        ])
        self.up = nn.ConvTranspose2d(dims, dims, 2, 2)
        for i in range(1, 5):
            self.add_module(f'norm{i}', build_norm_layer(norm_cfg, dims)[1])
        self._init_adapter_weights()

    def _check_indexes(self, indexes) -> List[List[int]]:
        pairs = [list(pair) for pair in indexes]
        ok = all(len(p) == 2 for p in pairs) and [
            i for a, b in pairs for i in range(a, b + 1)
        ] == list(range(self.num_layers))
        if not ok:
            raise ValueError(
                f'interaction_indexes {pairs} must be [first, last] pairs '
                f'covering layers 0..{self.num_layers - 1} in order')
        return pairs

    # ---- initialisation (the official scheme) ---------------------------
    def _init_adapter_weights(self):
        for part in (self.up, self.spm, self.interactions):
            part.apply(self._init_module)
        for m in self.modules():
            if isinstance(m, DeformableAttention):
                m.init_weights()
        nn.init.normal_(self.level_embed)

    @staticmethod
    def _init_module(m: nn.Module):
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, (nn.LayerNorm, nn.modules.batchnorm._BatchNorm)):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)
        elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            fan_out //= m.groups
            nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    # ---- forward -------------------------------------------------------
    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """x: (B, 3, H, W). Returns four (B, C, H'/s, W'/s) maps,
        s = 4, 8, 16, 32, where H', W' are H, W rounded up to 32."""
        x = self._pad(x)
        _, _, H, W = x.shape
        inputs = DeformInputs(H, W, x.device)

        c1, c2, c3, c4 = self.spm(x)
        level_sizes = [c2.shape[1], c3.shape[1], c4.shape[1]]
        c = torch.cat([c2 + self.level_embed[0], c3 + self.level_embed[1],
                       c4 + self.level_embed[2]], dim=1)

        x, patch_resolution = self._embed(x)

        stage_maps = []
        for block, (first, last) in zip(self.interactions,
                                        self.interaction_indexes):
            x, c = block(x, c, self.layers[first:last + 1], inputs,
                         patch_resolution)
            stage_maps.append(tokens_to_map(x, patch_resolution))

        c2, c3, c4 = c.split(level_sizes, dim=1)
        c2, c3, c4 = (tokens_to_map(t, shape) for t, shape in zip(
            (c2, c3, c4), inputs.level_shapes))
        c1 = self.up(c2) + c1
        outs = [c1, c2, c3, c4]

        if self.vrwkv_feature is not None:
            maps = [stage_maps[-1]] * 4 if self.vrwkv_feature == 'final' \
                else stage_maps
            for i, (scale, m) in enumerate(zip((4, 2, 1, 0.5), maps)):
                if scale != 1:
                    m = F.interpolate(m, scale_factor=scale, mode='bilinear',
                                      align_corners=False)
                outs[i] = outs[i] + m
        # The maps come from (B, N, C) tokens and keep channels-last strides
        # through the norm; hand the necks and heads standard NCHW tensors,
        # since mmcv's RoIAlign (CPU) reads its input as contiguous NCHW
        # without checking and returns garbage for other layouts.
        return [getattr(self, f'norm{i + 1}')(out).contiguous()
                for i, out in enumerate(outs)]

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        self._check_images(x, self.size_divisor, 'the adapter minimum')
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % self.size_divisor, -w % self.size_divisor
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return x
