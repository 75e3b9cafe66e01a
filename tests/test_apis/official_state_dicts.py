"""State dicts with the key names and shapes of the released Vision-RWKV
checkpoints, written down from the official code (OpenGVLab/Vision-RWKV at
0e0e38a) and the mmdet 2.x / mmseg 0.x / mmcls 0.x heads, not from our
models, so a converter that does not produce our names fails the tests.

Sources:
- backbone: classification/mmcls_custom/models/backbones/vrwkv.py (Block:
  ln0 in layer 0, ln1, ln2, att = VRWKV_SpatialMix, ffn = VRWKV_ChannelMix,
  gamma1/gamma2 with init_values; VRWKV: patch_embed (mmcv PatchEmbed,
  ``projection``), pos_embed, final ln1), classification_internimage for L.
- adapter: detection/mmdet_custom/models/backbones/vrwkv_adapter.py and
  adapter_modules.py (the segmentation copy has the same parameters);
  ``self.ln1 = None`` removes the final norm; MSDeformAttn from
  detection/ops/modules/ms_deform_attn.py.
- heads: mmdet 2.x Mask R-CNN (FPN, RPNHead, Shared2FCBBoxHead,
  FCNMaskHead), mmseg 0.x UPerHead + FCNHead with SyncBN ConvModules, mmcls
  0.x LinearClsHead; VRWKV-L's classifier head is nn.Sequential(Linear,
  Tanh, Linear) (classification_internimage/models/vrwkv.py).
"""
from collections import OrderedDict

import torch

# embed_dims, depth, post_norm, key_norm, layer scale in the classifiers;
# the adapters (det/seg configs) use init_values for every size.
PRESETS = dict(
    tiny=dict(dims=192, depth=12, key_norm=False, cls_scale=False,
              heads=6, ratio=1.0, img=224),
    small=dict(dims=384, depth=12, key_norm=False, cls_scale=True,
               heads=6, ratio=1.0, img=224),
    base=dict(dims=768, depth=12, key_norm=False, cls_scale=True,
              heads=12, ratio=0.5, img=224),
    large=dict(dims=1024, depth=24, key_norm=True, cls_scale=True,
               heads=16, ratio=0.5, img=192),
)


class Shapes(OrderedDict):
    """name -> shape, turned into tensors at the end."""

    def linear(self, name, cin, cout, bias=True):
        self[f'{name}.weight'] = (cout, cin)
        if bias:
            self[f'{name}.bias'] = (cout, )

    def norm(self, name, c):
        self[f'{name}.weight'] = (c, )
        self[f'{name}.bias'] = (c, )

    def bn(self, name, c):
        self.norm(name, c)
        self[f'{name}.running_mean'] = (c, )
        self[f'{name}.running_var'] = (c, )
        self[f'{name}.num_batches_tracked'] = ()

    def conv(self, name, cin, cout, k, bias=True, groups=1):
        self[f'{name}.weight'] = (cout, cin // groups, k, k)
        if bias:
            self[f'{name}.bias'] = (cout, )

    def conv_module(self, name, cin, cout, k):
        """mmcv ConvModule with a (Sync)BN: conv without bias, then bn."""
        self.conv(f'{name}.conv', cin, cout, k, bias=False)
        self.bn(f'{name}.bn', cout)

    def tensors(self, seed=0, device='cpu'):
        g = torch.Generator().manual_seed(seed)
        out = OrderedDict()
        for name, shape in self.items():
            if device == 'meta':
                out[name] = torch.empty(shape, device='meta')
            elif name.endswith('num_batches_tracked'):
                out[name] = torch.tensor(7)
            elif name.endswith('running_var'):
                out[name] = torch.rand(shape, generator=g) + 0.5
            else:
                out[name] = torch.randn(shape, generator=g) * 0.1
        return out


def vrwkv(s, p, dims, depth, img, key_norm, layer_scale, final_norm,
          patch=16, hidden_rate=4, in_channels=3):
    """Official VRWKV backbone parameters under prefix ``p``."""
    s.conv(f'{p}patch_embed.projection', in_channels, dims, patch)
    s[f'{p}pos_embed'] = (1, (img // patch)**2, dims)
    hidden = hidden_rate * dims
    for i in range(depth):
        b = f'{p}layers.{i}.'
        if layer_scale:
            s[b + 'gamma1'] = (dims, )
            s[b + 'gamma2'] = (dims, )
        if i == 0:
            s.norm(b + 'ln0', dims)
        s.norm(b + 'ln1', dims)
        s.norm(b + 'ln2', dims)
        s[b + 'att.spatial_decay'] = (dims, )
        s[b + 'att.spatial_first'] = (dims, )
        for m in 'kvr':
            s[b + f'att.spatial_mix_{m}'] = (1, 1, dims)
        for m in ('key', 'value', 'receptance'):
            s.linear(b + f'att.{m}', dims, dims, bias=False)
        if key_norm:
            s.norm(b + 'att.key_norm', dims)
        s.linear(b + 'att.output', dims, dims, bias=False)
        for m in 'kr':
            s[b + f'ffn.spatial_mix_{m}'] = (1, 1, dims)
        s.linear(b + 'ffn.key', dims, hidden, bias=False)
        if key_norm:
            s.norm(b + 'ffn.key_norm', hidden)
        s.linear(b + 'ffn.receptance', dims, dims, bias=False)
        s.linear(b + 'ffn.value', hidden, dims, bias=False)
    if final_norm:
        s.norm(f'{p}ln1', dims)


def _ms_deform_attn(s, p, dims, heads, levels, points, ratio):
    s.linear(p + 'sampling_offsets', dims, heads * levels * points * 2)
    s.linear(p + 'attention_weights', dims, heads * levels * points)
    s.linear(p + 'value_proj', dims, int(dims * ratio))
    s.linear(p + 'output_proj', int(dims * ratio), dims)


def _extractor(s, p, dims, heads, points, ratio, cffn_ratio):
    s.norm(p + 'query_norm', dims)
    s.norm(p + 'feat_norm', dims)
    _ms_deform_attn(s, p + 'attn.', dims, heads, 1, points, ratio)
    hidden = int(dims * cffn_ratio)
    s.linear(p + 'ffn.fc1', dims, hidden)
    s.conv(p + 'ffn.dwconv.dwconv', hidden, hidden, 3, groups=hidden)
    s.linear(p + 'ffn.fc2', hidden, dims)
    s.norm(p + 'ffn_norm', dims)


def vrwkv_adapter(s, p, dims, depth, img, key_norm, heads, ratio,
                  n_blocks=4, inplanes=64, points=4, cffn_ratio=0.25,
                  layer_scale=True):
    """Official VRWKV_Adapter parameters (backbone without ln1 + adapter)."""
    vrwkv(s, p, dims, depth, img, key_norm, layer_scale=layer_scale,
          final_norm=False)
    s[p + 'level_embed'] = (3, dims)
    widths = [(3, inplanes), (inplanes, inplanes), (inplanes, inplanes)]
    for j, (cin, cout) in zip((0, 3, 6), widths):
        s.conv(f'{p}spm.stem.{j}', cin, cout, 3, bias=False)
        s.bn(f'{p}spm.stem.{j + 1}', cout)
    for name, cin, cout in (('conv2', inplanes, 2 * inplanes),
                            ('conv3', 2 * inplanes, 4 * inplanes),
                            ('conv4', 4 * inplanes, 4 * inplanes)):
        s.conv(f'{p}spm.{name}.0', cin, cout, 3, bias=False)
        s.bn(f'{p}spm.{name}.1', cout)
    for j, cin in enumerate((inplanes, 2 * inplanes, 4 * inplanes,
                             4 * inplanes)):
        s.conv(f'{p}spm.fc{j + 1}', cin, dims, 1)
    for i in range(n_blocks):
        b = f'{p}interactions.{i}.'
        s[b + 'injector.gamma'] = (dims, )
        s.norm(b + 'injector.query_norm', dims)
        s.norm(b + 'injector.feat_norm', dims)
        _ms_deform_attn(s, b + 'injector.attn.', dims, heads, 3, points,
                        ratio)
        _extractor(s, b + 'extractor.', dims, heads, points, ratio,
                   cffn_ratio)
        if i == n_blocks - 1:
            for j in range(2):
                _extractor(s, b + f'extra_extractors.{j}.', dims, heads,
                           points, ratio, cffn_ratio)
    s.conv(p + 'up', dims, dims, 2)  # ConvTranspose2d(dims, dims, 2, 2)
    for j in range(1, 5):
        s.bn(f'{p}norm{j}', dims)


def mmdet2_mask_rcnn_heads(s, in_channels, num_classes=80, width=256,
                           fc=1024, mask_convs=4, roi=7, anchors=3):
    """mmdet 2.x Mask R-CNN FPN/RPN/RoI-head parameters."""
    for i in range(4):
        s.conv(f'neck.lateral_convs.{i}.conv', in_channels, width, 1)
        s.conv(f'neck.fpn_convs.{i}.conv', width, width, 3)
    s.conv('rpn_head.rpn_conv', width, width, 3)
    s.conv('rpn_head.rpn_cls', width, anchors, 1)       # sigmoid: 1 per anchor
    s.conv('rpn_head.rpn_reg', width, anchors * 4, 1)
    s.linear('roi_head.bbox_head.shared_fcs.0', width * roi * roi, fc)
    s.linear('roi_head.bbox_head.shared_fcs.1', fc, fc)
    s.linear('roi_head.bbox_head.fc_cls', fc, num_classes + 1)
    s.linear('roi_head.bbox_head.fc_reg', fc, num_classes * 4)
    for i in range(mask_convs):
        s.conv(f'roi_head.mask_head.convs.{i}.conv', width, width, 3)
    s.conv('roi_head.mask_head.upsample', width, width, 2)  # deconv
    s.conv('roi_head.mask_head.conv_logits', width, num_classes, 1)


def mmseg0_upernet_heads(s, in_channels, num_classes=150, channels=512,
                         aux_channels=256, pool_scales=(1, 2, 3, 6)):
    """mmseg 0.x UPerHead + FCNHead (auxiliary) parameters."""
    d = 'decode_head.'
    for i in range(len(pool_scales)):
        s.conv_module(f'{d}psp_modules.{i}.1', in_channels, channels, 1)
    s.conv_module(d + 'bottleneck', in_channels + len(pool_scales) *
                  channels, channels, 3)
    for i in range(3):
        s.conv_module(f'{d}lateral_convs.{i}', in_channels, channels, 1)
        s.conv_module(f'{d}fpn_convs.{i}', channels, channels, 3)
    s.conv_module(d + 'fpn_bottleneck', 4 * channels, channels, 3)
    s.conv(d + 'conv_seg', channels, num_classes, 1)
    s.conv_module('auxiliary_head.convs.0', in_channels, aux_channels, 3)
    s.conv('auxiliary_head.conv_seg', aux_channels, num_classes, 1)


def official_classifier(arch, num_classes=1000):
    """vrwkv_{t,s,b}_in1k_224.pth (mmcls 0.x) or vrwkv_l_22kto1k_384.pth
    (InternImage code: MLP head, 192 px position embedding)."""
    c = PRESETS[arch]
    s = Shapes()
    vrwkv(s, 'backbone.', c['dims'], c['depth'], c['img'], c['key_norm'],
          c['cls_scale'], final_norm=True)
    if arch == 'large':
        s.linear('head.0', c['dims'], 3072)
        s.linear('head.2', 3072, num_classes)
    else:
        s.linear('head.fc', c['dims'], num_classes)
    return s


def official_mask_rcnn(arch):
    """mask_rcnn_vrwkv_adapter_{arch}_fpn_1x_coco.pth."""
    c = PRESETS[arch]
    s = Shapes()
    vrwkv_adapter(s, 'backbone.', c['dims'], c['depth'], c['img'],
                  c['key_norm'], c['heads'], c['ratio'])
    mmdet2_mask_rcnn_heads(s, c['dims'])
    return s


def official_upernet(arch):
    """upernet_vrwkv_adapter_{arch}_512_160k_ade20k.pth."""
    c = PRESETS[arch]
    s = Shapes()
    vrwkv_adapter(s, 'backbone.', c['dims'], c['depth'], c['img'],
                  c['key_norm'], c['heads'], c['ratio'])
    mmseg0_upernet_heads(s, c['dims'])
    return s


def mmcv1_checkpoint(state_dict, classes=None, palette=None, ddp=False):
    """How mmcv 1.x runners save: state_dict + meta (+ optimizer)."""
    if ddp:
        state_dict = OrderedDict(
            (f'module.{k}', v) for k, v in state_dict.items())
    meta = dict(mmcv_version='1.7.1', time='Mon Jan  1 00:00:00 2024',
                epoch=12, iter=88000, config='model = dict(...)')
    if classes is not None:
        meta['CLASSES'] = tuple(classes)
    if palette is not None:
        meta['PALETTE'] = [list(p) for p in palette]
    return dict(meta=meta, state_dict=state_dict,
                optimizer=dict(state={}, param_groups=[dict(lr=1e-4)]))


def internimage_checkpoint(state_dict):
    """How the InternImage-based code (VRWKV-L) saves."""
    return dict(state_dict=state_dict, max_accuracy=86.0, epoch=19,
                model_ema=state_dict)


def official_demo_models():
    """The demo configs' small architectures (configs/demo/: 4 layers of 96
    channels, no layer scale, one layer per interaction block) in the
    official formats: (Mask R-CNN, UperNet)."""
    backbone = dict(dims=96, depth=4, img=256, key_norm=False, heads=3,
                    ratio=1.0, inplanes=16, layer_scale=False)
    det, seg = Shapes(), Shapes()
    vrwkv_adapter(det, 'backbone.', **backbone)
    mmdet2_mask_rcnn_heads(det, 96, num_classes=3, width=64, fc=256,
                           mask_convs=2)
    vrwkv_adapter(seg, 'backbone.', **backbone)
    mmseg0_upernet_heads(seg, 96, num_classes=4, channels=64,
                         aux_channels=64)
    return det, seg


# VRWKV6 (classification/configs/vrwkv6/vrwkv6_{tiny,small,base}_*_in1k.py):
# embed_dims, depth, layer scale (init_values) in the classifiers
PRESETS_V6 = dict(
    tiny=dict(dims=192, depth=12, layer_scale=False),
    small=dict(dims=384, depth=12, layer_scale=True),
    base=dict(dims=768, depth=12, layer_scale=True),
)


def vrwkv6(s, p, dims, depth, layer_scale, img=224, key_norm=False,
           final_norm=True, patch=16, hidden_rate=4, in_channels=3,
           head_size=64):
    """Official VRWKV6 backbone parameters under prefix ``p``, from
    classification/mmcls_custom/models/backbones/vrwkv6.py: Block (ln0 in
    layer 0, ln1, ln2, gamma1/gamma2 with init_values), att =
    VRWKV_SpatialMix_V6 (time_maa_{x,w,k,v,r,g} (1, 1, C); time_maa_w1
    (C, 32 * 5); time_maa_w2 (5, 32, C); time_decay (1, 1, C);
    time_decay_w1 (C, 64); time_decay_w2 (64, C); time_faaaa
    (heads, 64); key/value/receptance/gate/output without bias; ln_x =
    GroupNorm(heads, C)), ffn = VRWKV_ChannelMix (as VRWKV's)."""
    s.conv(f'{p}patch_embed.projection', in_channels, dims, patch)
    s[f'{p}pos_embed'] = (1, (img // patch)**2, dims)
    hidden = hidden_rate * dims
    for i in range(depth):
        b = f'{p}layers.{i}.'
        s.norm(b + 'ln1', dims)
        s.norm(b + 'ln2', dims)
        if i == 0:
            s.norm(b + 'ln0', dims)
        a = b + 'att.'
        for m in 'xwkvrg':
            s[a + f'time_maa_{m}'] = (1, 1, dims)
        s[a + 'time_maa_w1'] = (dims, 32 * 5)
        s[a + 'time_maa_w2'] = (5, 32, dims)
        s[a + 'time_decay'] = (1, 1, dims)
        s[a + 'time_decay_w1'] = (dims, 64)
        s[a + 'time_decay_w2'] = (64, dims)
        s[a + 'time_faaaa'] = (dims // head_size, head_size)
        for m in ('key', 'value', 'receptance', 'gate'):
            s.linear(a + m, dims, dims, bias=False)
        if key_norm:
            s.norm(a + 'key_norm', dims)
        s.linear(a + 'output', dims, dims, bias=False)
        s.norm(a + 'ln_x', dims)
        for m in 'kr':
            s[b + f'ffn.spatial_mix_{m}'] = (1, 1, dims)
        s.linear(b + 'ffn.key', dims, hidden, bias=False)
        if key_norm:
            s.norm(b + 'ffn.key_norm', hidden)
        s.linear(b + 'ffn.receptance', dims, dims, bias=False)
        s.linear(b + 'ffn.value', hidden, dims, bias=False)
        if layer_scale:
            s[b + 'gamma1'] = (dims, )
            s[b + 'gamma2'] = (dims, )
    if final_norm:
        s.norm(f'{p}ln1', dims)


def official_vrwkv6_classifier(arch, num_classes=1000):
    """vrwkv6_{t,s,b}_in1k_224.pth (mmcls 0.x ImageClassifier:
    GlobalAveragePooling has no parameters, LinearClsHead is head.fc)."""
    c = PRESETS_V6[arch]
    s = Shapes()
    vrwkv6(s, 'backbone.', c['dims'], c['depth'], c['layer_scale'])
    s.linear('head.fc', c['dims'], num_classes)
    return s
