"""`--amp` on a CPU-only machine: the demo Mask R-CNN and UperNet train with
bfloat16 autocast (CPUAmpOptimWrapper, built by PortableRunner in place of
mmengine's GPU-only AmpOptimWrapper) and stay finite."""
import math

import pytest
import torch

import mmvrwkv  # noqa: F401
from mmvrwkv.engine import CPUAmpOptimWrapper
from .dense_helpers import DET_CFG, det_options, load, make_data
from .reliability_helpers import build_runner, tiny_seg_config


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return make_data(str(tmp_path_factory.mktemp('shapes')), train=4, val=2,
                     size=64)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    # bfloat16 matmuls and convolutions have no native kernels on CPUs
    # without AVX512-BF16 (3x slower than float32 here)
    yield


def as_tools_train_amp(cfg):
    """What mmdet/mmseg tools/train.py --amp does to the config."""
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.loss_scale = 'dynamic'
    return cfg


def tiny_mask_rcnn(data_root, work_dir):
    """The demo Mask R-CNN, narrowed, on 64x64 images, 2 iterations."""
    cfg = load(DET_CFG, det_options(data_root, work_dir))
    cfg.merge_from_dict({
        'model.backbone.arch': dict(embed_dims=32, num_layers=4),
        'model.backbone.img_size': 64,
        'model.backbone.conv_inplane': 8,
        'model.backbone.deform_num_heads': 2,
        'model.neck.in_channels': [32] * 4,
        'train_dataloader.dataset.pipeline': [
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
            dict(type='Resize', scale=(64, 64), keep_ratio=True),
            dict(type='PackDetInputs')],
    })
    return cfg


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU path')
@pytest.mark.parametrize('make', [
    lambda d, w: tiny_seg_config(d, w, max_iters=4, batch_size=2),
    tiny_mask_rcnn], ids=['upernet', 'mask_rcnn'])
def test_amp_trains_in_bfloat16_without_nan(data_root, tmp_path, make):
    cfg = as_tools_train_amp(make(data_root, str(tmp_path)))
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.train_cfg.pop('val_interval', None)
    runner = build_runner(cfg)
    dtypes = set()
    model = runner.model
    model.backbone.patch_embed.projection.register_forward_hook(
        lambda m, i, out: dtypes.add(out.dtype))
    runner.train()
    assert isinstance(runner.optim_wrapper, CPUAmpOptimWrapper)
    assert dtypes == {torch.bfloat16}  # autocast was on
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(losses) > 0 and all(math.isfinite(x) for x in losses)
    for name, p in model.named_parameters():
        assert p.dtype == torch.float32 and torch.isfinite(p).all(), name


def test_amp_wrapper_rejects_bad_dtype_and_loads_gpu_state():
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match='bfloat16 or float16'):
        CPUAmpOptimWrapper(optimizer=opt, dtype='float32')
    wrapper = CPUAmpOptimWrapper(optimizer=opt)
    state = wrapper.state_dict()
    state['loss_scaler'] = {'scale': 65536.0}  # from a GPU --amp run
    wrapper.load_state_dict(state)
