"""What the Vision-RWKV backbones (VRWKV, VRWKV6) share: arch presets,
patch and position embeddings, the checkpoint pre-hook, output formats,
freezing, layer depth for lr decay, input checks and the forward loop."""
import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks.transformer import PatchEmbed
from mmengine.logging import MMLogger
from mmengine.model import BaseModule, ModuleList

from ..flop_handles import register_flop_handles


def resize_pos_embed(pos_embed: torch.Tensor, src_shape: Sequence[int],
                     dst_shape: Sequence[int],
                     mode: str = 'bicubic') -> torch.Tensor:
    """Resize a (1, H*W, C) position embedding from an (H, W) grid to another
    grid by image interpolation (align_corners=False, computed in float32)."""
    src_shape, dst_shape = tuple(src_shape), tuple(dst_shape)
    # Exported graphs keep the image size symbolic, so they always
    # interpolate (to the same size that is an exact identity).
    if not torch.compiler.is_exporting() and src_shape == dst_shape:
        return pos_embed
    _, n, c = pos_embed.shape
    if n != src_shape[0] * src_shape[1]:
        raise ValueError(f'position embedding has {n} tokens, not '
                         f'{src_shape[0]}x{src_shape[1]}')
    grid = pos_embed.reshape(1, *src_shape, c).permute(0, 3, 1, 2)
    grid = F.interpolate(
        grid.float(), size=dst_shape, mode=mode, align_corners=False)
    return grid.flatten(2).transpose(1, 2).to(pos_embed.dtype)


def extend_presets(base: Dict[str, dict], added: Dict[str, dict],
                   replaced: Optional[Dict[str, dict]] = None
                   ) -> Dict[str, dict]:
    """The presets of a model built on another: ``base``'s presets, each
    with the ``added`` settings of the same name and the ``replaced``
    values.

    Each preset of ``base`` needs its ``added`` entry; a setting in
    ``added`` must be new and one in ``replaced`` must exist in ``base``,
    so no value is changed without being listed as a change.

    Args:
        base (dict): name -> settings (aliases map to equal dicts).
        added (dict): name -> settings that ``base`` does not have.
        replaced (dict, optional): name -> new values of ``base`` settings.

    Returns:
        dict: name -> merged settings, for every name of ``base``.
    """
    replaced = replaced or {}
    presets = {}
    for name, settings in base.items():
        if name not in added:
            raise ValueError(f'no added settings for preset {name!r}')
        clash = sorted(set(added[name]) & set(settings))
        unknown = sorted(set(replaced.get(name, {})) - set(settings))
        if clash or unknown:
            raise ValueError(
                f'preset {name!r}: added settings {clash} exist already, '
                f'replaced settings {unknown} do not: list a change in '
                'replaced and a new setting in added')
        presets[name] = {**settings, **replaced.get(name, {}),
                         **added[name]}
    return presets


class VisionRWKVBase(BaseModule):
    """A ViT-shaped stack of RWKV layers on patch tokens: what VRWKV, VRWKV6
    and their adapters share (the backbone contract).

    Subclasses set ``arch_zoo``, call ``super().__init__(...)``, then
    :meth:`_build_layers` with a function making layer i (each layer is
    called as ``layer(x, (H, W))`` on (B, N, C) tokens).

    Args:
        arch (str | dict): a name in ``arch_zoo`` (case-insensitive) or a
            dict with ``embed_dims`` and ``num_layers`` and optionally the
            keys of ``_ARCH_OPTIONAL`` (``post_norm``, ``key_norm``,
            ``init_values``, ``hidden_rate``). Defaults to 'tiny'.
        img_size (int | tuple): size the position embedding is made for
            (other sizes are interpolated). Defaults to 224.
        patch_size (int): Defaults to 16.
        in_channels (int): image channels. Defaults to 3.
        out_indices (int | Sequence[int]): layers whose outputs are
            returned; negative values count from the end. Defaults to -1.
        drop_rate (float): dropout after the position embedding.
            Defaults to 0.
        drop_path_rate (float): stochastic depth, linearly increasing with
            depth up to this value. Defaults to 0.
        post_norm (bool, optional): override the arch's post-norm setting;
            None keeps it. Defaults to None.
        key_norm (bool, optional): override the arch's key-norm setting;
            None keeps it. Defaults to None.
        init_values (float, optional): override the arch's layer-scale init;
            0 turns layer scale off, None keeps the arch's. Defaults to
            None.
        hidden_rate (int, optional): override the arch's Channel Mix
            expansion; None keeps it. Defaults to None.
        final_norm (bool): LayerNorm (``ln1``) after the last layer.
            Defaults to True.
        interpolate_mode (str): position-embedding interpolation.
            Defaults to 'bicubic'.
        out_type (str): 'featmap' (B, C, H, W), 'raw' (B, N, C) or
            'avg_featmap' (B, C), the mean token. Defaults to 'featmap'.
        frozen_stages (int): freeze the embeddings (>= 0) and the first
            ``frozen_stages`` layers; -1 freezes nothing. Defaults to -1.
        with_cp (bool): gradient checkpointing per layer. Defaults to False.
        wkv_backend (str): how every layer computes its Bi-WKV / Bi-WKV6
            (:func:`mmvrwkv.ops.bi_wkv`): 'auto' (the compiled kernel,
            else standard operators), 'compiled', 'chunked' (standard
            operators, no compiled code: any device, ONNX export),
            'reference', or (VRWKV6) 'fla'. Defaults to 'auto'.
        init_cfg (dict | list, optional): mmengine initialisation config.
            Defaults to None.
    """
    arch_zoo: Dict[str, dict] = {}
    OUT_TYPES = ('featmap', 'raw', 'avg_featmap')
    _ARCH_REQUIRED = ('embed_dims', 'num_layers')
    _ARCH_OPTIONAL = {'post_norm': False, 'key_norm': False,
                      'init_values': None, 'hidden_rate': 4}

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 img_size: Union[int, Sequence[int]] = 224,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = -1,
                 drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 post_norm: Optional[bool] = None,
                 key_norm: Optional[bool] = None,
                 init_values: Optional[float] = None,
                 hidden_rate: Optional[int] = None,
                 final_norm: bool = True,
                 interpolate_mode: str = 'bicubic',
                 out_type: str = 'featmap',
                 frozen_stages: int = -1,
                 with_cp: bool = False,
                 wkv_backend: str = 'auto',
                 init_cfg: Optional[Union[dict, list]] = None):
        super().__init__(init_cfg)
        register_flop_handles()  # mmengine's counter then counts Bi-WKV
        self.wkv_backend = wkv_backend
        self.arch_settings = self._parse_arch(arch)
        self._override_arch(
            dict(post_norm=post_norm, key_norm=key_norm,
                 init_values=init_values, hidden_rate=hidden_rate))
        self.embed_dims = self.arch_settings['embed_dims']
        self.num_layers = self.arch_settings['num_layers']
        if out_type not in self.OUT_TYPES:
            raise ValueError(f'out_type {out_type!r} is not one of: '
                             + ', '.join(self.OUT_TYPES))
        self.out_type = out_type
        self.out_indices = self._parse_out_indices(out_indices)
        self.frozen_stages = frozen_stages
        self.interpolate_mode = interpolate_mode
        self.drop_path_rate = drop_path_rate
        self.final_norm = final_norm
        self.with_cp = with_cp
        self.num_extra_tokens = 0

        self.patch_embed = PatchEmbed(
            in_channels=in_channels,
            input_size=img_size,
            embed_dims=self.embed_dims,
            conv_type='Conv2d',
            kernel_size=patch_size,
            stride=patch_size,
            bias=True)
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.patch_resolution = self.patch_embed.init_out_size
        num_patches = self.patch_resolution[0] * self.patch_resolution[1]
        self.pos_embed = nn.Parameter(
            torch.zeros(1, num_patches, self.embed_dims))
        self.drop_after_pos = nn.Dropout(p=drop_rate)
        self._register_load_state_dict_pre_hook(self._prepare_pos_embed)

    def _drop_path_rates(self, drop_path_rate: float) -> List[float]:
        """Stochastic depth per layer, linear from 0 to drop_path_rate."""
        # on the CPU explicitly: .tolist() fails under a 'meta' default
        # device (models built without memory to check checkpoint shapes)
        return torch.linspace(0, drop_path_rate, self.num_layers,
                              device='cpu').tolist()

    def _build_layers(self, make_layer: Callable[[int, float], nn.Module]):
        """Attach ``make_layer(i, drop_path)`` for each layer i and the
        final LayerNorm (``ln1``), then apply ``frozen_stages``."""
        self.layers = ModuleList([
            make_layer(i, drop_path)
            for i, drop_path in enumerate(
                self._drop_path_rates(self.drop_path_rate))
        ])
        if self.final_norm:
            self.ln1 = nn.LayerNorm(self.embed_dims)
        self._freeze_stages()

    # ---- configuration -------------------------------------------------
    def _parse_arch(self, arch: Union[str, dict]) -> dict:
        if isinstance(arch, str):
            key = arch.lower()
            if key not in self.arch_zoo:
                names = sorted({k for k in self.arch_zoo if len(k) > 1})
                raise ValueError(f'arch {arch!r} is not one of: '
                                 + ', '.join(names) + ' (or pass a dict)')
            return dict(self.arch_zoo[key])
        if isinstance(arch, dict):
            missing = [k for k in self._ARCH_REQUIRED if k not in arch]
            if missing:
                raise ValueError(f'a custom arch dict needs {missing}')
            unknown = set(arch) - set(self._ARCH_REQUIRED) - set(
                self._ARCH_OPTIONAL)
            if unknown:
                raise ValueError(f'unknown arch keys {sorted(unknown)}; '
                                 'allowed: ' + ', '.join(
                                     self._ARCH_REQUIRED +
                                     tuple(self._ARCH_OPTIONAL)))
            return {**self._ARCH_OPTIONAL, **arch}
        raise TypeError(f'arch must be a str or dict, got {type(arch)}')

    def _override_arch(self, overrides: dict):
        """Replace arch settings by the ``overrides`` that are not None."""
        self.arch_settings.update(
            {k: v for k, v in overrides.items() if v is not None})

    def _parse_out_indices(self, out_indices) -> Tuple[int, ...]:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not isinstance(out_indices, Sequence):
            raise TypeError('out_indices must be an int or a sequence of '
                            f'ints, got {type(out_indices)}')
        result = []
        for index in out_indices:
            i = index + self.num_layers if index < 0 else index
            if not 0 <= i < self.num_layers:
                raise ValueError(
                    f'out_indices {index} is out of range for a backbone of '
                    f'{self.num_layers} layers (valid: '
                    f'-{self.num_layers}..{self.num_layers - 1})')
            result.append(i)
        return tuple(result)

    # ---- checkpoints, freezing, layer decay ----------------------------
    def _prepare_pos_embed(self, state_dict, prefix, *args, **kwargs):
        """Resize a checkpoint's position embedding to this model's grid
        (e.g. the 12x12 of VRWKV-L's 192px pretraining to 14x14)."""
        name = prefix + 'pos_embed'
        if name not in state_dict:
            return
        ckpt = state_dict[name]
        if ckpt.shape == self.pos_embed.shape:
            return
        side = math.isqrt(ckpt.shape[1])
        if side * side != ckpt.shape[1] or ckpt.shape[2] != self.embed_dims:
            presets = ', '.join(f'{k} {v["embed_dims"]}'
                                for k, v in self.arch_zoo.items()
                                if len(k) > 1)
            raise ValueError(
                f'cannot load {name} of shape {tuple(ckpt.shape)} into '
                f'{tuple(self.pos_embed.shape)}: the checkpoint has '
                f'embed_dims={ckpt.shape[-1]}, this model '
                f'{self.embed_dims}; it is for another arch preset '
                f'({presets}): use the checkpoint of this arch or change '
                'arch')
        MMLogger.get_current_instance().info(
            f'Resize {name} from {side}x{side} to '
            f'{self.patch_resolution[0]}x{self.patch_resolution[1]}.')
        state_dict[name] = resize_pos_embed(ckpt, (side, side),
                                            self.patch_resolution,
                                            self.interpolate_mode)

    def _freeze_stages(self):
        if self.frozen_stages < 0:
            return
        frozen = [self.patch_embed, self.drop_after_pos]
        frozen += list(self.layers[:self.frozen_stages])
        if self.frozen_stages >= self.num_layers and self.final_norm:
            frozen.append(self.ln1)
        self.pos_embed.requires_grad = False
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        return self

    def get_layer_depth(self, param_name: str, prefix: str = ''):
        """Layer id of a parameter for layer-wise lr decay.

        Embeddings get 0, ``layers.i`` gets i + 1, everything else
        ``num_layers + 1``. Returns (layer_depth, num_layers + 2), the
        contract of mmpretrain's LearningRateDecayOptimWrapperConstructor.
        """
        total = self.num_layers + 2
        if not param_name.startswith(prefix):
            return total - 1, total
        name = param_name[len(prefix):]
        if name.startswith(('pos_embed', 'patch_embed')):
            return 0, total
        if name.startswith('layers.'):
            return int(name.split('.')[1]) + 1, total
        return total - 1, total

    # ---- forward -------------------------------------------------------
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """x: (B, in_channels, H, W) images of any size (padded to a multiple
        of the patch size). Returns one output per ``out_indices``."""
        self._check_images(x, self.patch_size, 'one patch')
        B = x.shape[0]
        x, patch_resolution = self._embed(x)
        outs = []
        for i, layer in enumerate(self.layers):
            x = layer(x, patch_resolution)
            if i == self.num_layers - 1 and self.final_norm:
                x = self.ln1(x)
            if i in self.out_indices:
                outs.append(self._format_output(x, patch_resolution, B))
        return tuple(outs)

    def _embed(self, x: torch.Tensor
               ) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """(B, C, H, W) images -> (B, N, embed_dims) tokens with the
        position embedding (resized to the grid) and dropout, and the
        token grid (H / patch, W / patch)."""
        x, patch_resolution = self.patch_embed(x)
        x = x + resize_pos_embed(self.pos_embed, self.patch_resolution,
                                 patch_resolution, self.interpolate_mode)
        return self.drop_after_pos(x), patch_resolution

    def _check_images(self, x: torch.Tensor, min_size: int, what: str):
        """Reject input that would fail deep inside the model or give
        garbage: wrong shape or channel count, images smaller than
        ``min_size`` (``what`` names it), NaN/Inf pixels."""
        name = type(self).__name__
        if x.dim() != 4:
            raise ValueError(f'{name} expects images (B, C, H, W), got a '
                             f'tensor of shape {tuple(x.shape)}')
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f'{name} expects {self.in_channels}-channel images, got '
                f'{x.shape[1]} (shape {tuple(x.shape)}): pass '
                f'{self.in_channels}-channel images or build the backbone '
                f'with in_channels={x.shape[1]}')
        h, w = x.shape[-2:]
        if h < min_size or w < min_size:
            raise ValueError(
                f'{name}: input {h}x{w} is smaller than {what} '
                f'({min_size}x{min_size}): pass images of at least '
                f'{min_size}x{min_size}')
        if torch.jit.is_tracing() or torch.compiler.is_exporting():
            return  # FLOP counting and export: no data checks in the graph
        # An asynchronous assert: no copy to the host and no graph break (on
        # a GPU it fails at the next synchronisation, on the CPU at once).
        torch._assert_async(
            torch.isfinite(x).all(),
            f'{name}: the input images contain NaN/Inf values; the backbone '
            'needs finite pixel values')

    def _format_output(self, x, patch_resolution, B):
        if self.out_type == 'raw':
            return x
        if self.out_type == 'avg_featmap':
            return x.mean(dim=1)
        return x.reshape(B, *patch_resolution, -1).permute(0, 3, 1,
                                                           2).contiguous()
