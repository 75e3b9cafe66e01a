"""Swap a VRWKV backbone into unmodified mmdet / mmseg configs by editing
only ``model.backbone`` and the channels the next module expects."""
import copy

import numpy as np
import pytest
import torch
from mmengine.hub import get_config
from mmengine.structures import PixelData

from mmvrwkv.apis import build_model

ADAPTER = dict(
    _delete_=True, type='VRWKVAdapter',
    arch=dict(embed_dims=64, num_layers=4), img_size=64, conv_inplane=16,
    deform_num_heads=2, deform_ratio=1.0,
    interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]])
PLAIN = dict(
    _delete_=True, type='VRWKV', arch=dict(embed_dims=64, num_layers=4),
    img_size=64, out_indices=(0, 1, 2, 3))


def swap(path, backbone, **model):
    cfg = get_config(path)  # the installed package's own config file
    cfg.merge_from_dict(
        copy.deepcopy(dict(model=dict(backbone=backbone, **model))))
    return cfg


def test_retinanet(tmp_path):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    cfg = swap('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', ADAPTER,
               neck=dict(in_channels=[64, 64, 64, 64]))
    model = build_model(cfg)
    model.init_weights()
    samples = []
    for h, w in ((150, 200), (120, 96)):
        s = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                        scale_factor=(1., 1.)))
        s.gt_instances = InstanceData(
            bboxes=torch.tensor([[10., 20., 60., 90.]]),
            labels=torch.tensor([3]))
        samples.append(s)
    batch = dict(inputs=[torch.randint(0, 255, (3, 150, 200), dtype=torch
                                       .uint8),
                         torch.randint(0, 255, (3, 120, 96), dtype=torch
                                       .uint8)],
                 data_samples=samples)
    data = model.data_preprocessor(batch, True)
    losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    loss.backward()
    assert torch.isfinite(loss)
    assert model.backbone.interactions[0].extractor.attn.value_proj.weight \
        .grad is not None
    model.eval()
    with torch.no_grad():
        preds = model(**model.data_preprocessor(batch, False), mode='predict')
    assert len(preds) == 2 and 'bboxes' in preds[0].pred_instances


@pytest.mark.parametrize('backbone', [PLAIN, ADAPTER],
                         ids=['VRWKV', 'VRWKVAdapter'])
def test_pspnet(backbone):
    from mmseg.structures import SegDataSample
    cfg = swap('mmseg::pspnet/pspnet_r50-d8_4xb4-80k_ade20k-512x512.py',
               backbone, pretrained=None,
               decode_head=dict(in_channels=64, channels=32),
               auxiliary_head=dict(in_channels=64, channels=32))
    cfg.model.data_preprocessor.size = (64, 96)
    model = build_model(cfg)
    model.init_weights()
    samples = []
    for _ in range(2):
        s = SegDataSample(metainfo=dict(img_shape=(64, 96),
                                        ori_shape=(64, 96)))
        s.gt_sem_seg = PixelData(data=torch.from_numpy(
            np.random.randint(0, 150, (1, 64, 96))).long())
        samples.append(s)
    batch = dict(inputs=[torch.randint(0, 255, (3, 64, 96),
                                       dtype=torch.uint8)] * 2,
                 data_samples=samples)
    losses = model(**model.data_preprocessor(batch, True), mode='loss')
    loss, _ = model.parse_losses(losses)
    loss.backward()
    assert torch.isfinite(loss)
    model.eval()
    with torch.no_grad():
        preds = model(**model.data_preprocessor(batch, False), mode='predict')
    assert preds[0].pred_sem_seg.data.shape == (1, 64, 96)
