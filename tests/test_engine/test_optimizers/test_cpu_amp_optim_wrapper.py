"""`--amp` on a CPU-only machine: CPUAmpOptimWrapper autocasts backbone and
neck only, through hooks that leave nothing behind; the demo Mask R-CNN and
UperNet train with it (built by PortableRunner in place of mmengine's
GPU-only AmpOptimWrapper) in bfloat16 and stay finite."""
import math

import pytest
import torch
import torch.nn as nn

import mmvrwkv  # noqa: F401
from mmvrwkv.engine import CPUAmpOptimWrapper
from mmvrwkv.engine.optimizers import cpu_amp_config
from ..helpers import build_runner, make_data, tiny_mask_rcnn, tiny_seg_config


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


class Head(nn.Module):
    """Records the dtype it receives and whether autocast is on."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append((x.dtype, torch.is_autocast_enabled('cpu')))
        return x.sum()


class Detector(nn.Module):
    def __init__(self, fail=False):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 4))
        self.neck = nn.Linear(4, 4)
        self.head = Head()
        self.fail = fail

    def forward(self, x):
        x = self.backbone(x)
        if self.fail:
            raise RuntimeError('a failing step')
        return self.head(self.neck(x))


def test_autocast_covers_backbone_and_neck_only():
    model = Detector()
    wrapper = CPUAmpOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    inner, outer = [], []
    model.backbone[0].register_forward_hook(
        lambda m, i, out: inner.append(out.dtype))
    # a hook of the user's on the autocast module itself
    model.backbone.register_forward_hook(
        lambda m, i, out: outer.append(out.dtype))
    x = torch.randn(2, 4)
    with wrapper.optim_context(model):
        model(x)
    assert inner == [torch.bfloat16]  # the matmul ran in bfloat16
    assert outer == [torch.float32]  # outputs are cast back first
    assert model.head.seen == [(torch.float32, False)]
    # nothing is left on the modules: only the user's hooks remain
    assert not model.backbone._forward_pre_hooks
    assert len(model.backbone._forward_hooks) == 1
    assert not model.neck._forward_hooks
    assert 'forward' not in vars(model.backbone)
    model(x)
    assert inner[-1] == torch.float32


def test_autocast_ends_when_the_forward_raises():
    model = Detector(fail=True)
    wrapper = CPUAmpOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(RuntimeError, match='a failing step'):
        with wrapper.optim_context(model):
            model(torch.randn(2, 4))
    assert not torch.is_autocast_enabled('cpu')
    assert not model.backbone._forward_pre_hooks


def test_whole_forward_without_the_named_modules():
    model = nn.Sequential(nn.Linear(4, 4))
    wrapper = CPUAmpOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with wrapper.optim_context(model):
        assert model(torch.randn(2, 4)).dtype == torch.bfloat16


@pytest.mark.parametrize('dtype', [None, 'float16', 'bfloat16'])
def test_amp_config_becomes_cpu_amp(dtype):
    cfg = dict(type='AmpOptimWrapper', loss_scale='dynamic', use_fsdp=False,
               optimizer=dict(type='SGD', lr=0.1))
    if dtype:
        cfg['dtype'] = dtype
    assert cpu_amp_config(cfg) == dict(type='CPUAmpOptimWrapper',
                                       dtype='bfloat16',
                                       optimizer=dict(type='SGD', lr=0.1))
    assert cfg['type'] == 'AmpOptimWrapper'  # the input is not changed
