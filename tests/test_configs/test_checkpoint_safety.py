"""The paper configs load checkpoints weights-only and write them
atomically: each lists CheckpointSafetyHook and names the 'atomic_local'
backend, and through the real runner a checkpoint whose unpickling would
run code is refused (``load_from``, and a URL in ``init_cfg``) while the
runner's own checkpoints load."""
import glob
import os

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import HOOKS, RUNNERS, init_default_scope
from PIL import Image

from mmvrwkv.engine.hooks import CheckpointSafetyHook
from mmvrwkv.utils import load_checkpoint_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
PAPER_CONFIGS = sorted(glob.glob(os.path.join(ROOT, 'configs', '*.py')))
CLASSIFIER = os.path.join(ROOT, 'configs', 'vrwkv_t_in1k.py')


@pytest.mark.parametrize('path', PAPER_CONFIGS, ids=os.path.basename)
def test_paper_config_turns_safety_on(path):
    cfg = Config.fromfile(path)
    init_default_scope(cfg.default_scope)
    hooks = [HOOKS.build(hook) for hook in cfg.custom_hooks]
    assert any(isinstance(hook, CheckpointSafetyHook) for hook in hooks)
    assert cfg.runner_type == 'PortableRunner'
    assert cfg.default_hooks.checkpoint.backend_args == dict(
        backend='atomic_local')


def classifier_cfg(tmp_path, **options):
    """configs/vrwkv_t_in1k.py on 2 images of 2 classes at 64 px (one
    step at a constant learning rate, no validation); the model, runner and
    hooks as they are."""
    data_root = tmp_path / 'images'
    for c, name in enumerate(('circle', 'square')):
        (data_root / name).mkdir(parents=True, exist_ok=True)
        img = np.full((40, 48, 3), 30 + 100 * c, np.uint8)
        Image.fromarray(img).save(data_root / name / '0.png')
    loader = dict(
        batch_size=2, num_workers=0, persistent_workers=False,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(type='CustomDataset', data_root=str(data_root),
                     pipeline=[dict(type='LoadImageFromFile'),
                               dict(type='Resize', scale=(64, 64)),
                               dict(type='PackInputs')]))
    cfg = Config.fromfile(CLASSIFIER)
    cfg.train_dataloader = loader
    cfg.test_dataloader = loader
    cfg.train_cfg = dict(by_epoch=True, max_epochs=1)
    cfg.param_scheduler = None  # the recipe's warm-up is 20 epochs
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
    cfg.merge_from_dict(dict(
        work_dir=str(tmp_path / 'work'), log_level='WARNING',
        default_hooks=dict(logger=dict(interval=1)),
        env_cfg=dict(dist_cfg=dict(backend='gloo')), **options))
    return cfg


def build_runner(cfg):
    # as mm tools/train.py and tools/test.py: the config's runner_type
    return RUNNERS.build(cfg)


@pytest.mark.usefixtures('mmengine_registries')
def test_runner_refuses_pickled_code(tmp_path, malicious, http_server,
                                     monkeypatch):
    # torch.load's default becomes weights_only=False with this variable;
    # the configs' loaders pass weights_only=True explicitly.
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    path, marker = malicious

    runner = build_runner(classifier_cfg(tmp_path, load_from=str(path)))
    with pytest.raises(RuntimeError, match='never runs code stored'):
        runner.test()                           # --checkpoint, load_from
    assert not marker.exists()

    url = f'{http_server}/{path.name}'
    runner = build_runner(classifier_cfg(tmp_path, model=dict(
        backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=url,
                                    prefix='backbone.')))))
    with pytest.raises(RuntimeError, match='never runs code stored'):
        runner.train()                          # pretrained weights
    assert not marker.exists()


@pytest.mark.usefixtures('mmengine_registries')
def test_runner_checkpoints_load_weights_only(tmp_path):
    build_runner(classifier_cfg(tmp_path)).train()
    work = tmp_path / 'work'
    assert (work / 'last_checkpoint').read_text().endswith('epoch_1.pth')
    assert not glob.glob(str(work / '.*.tmp'))  # written atomically
    # message hub, numpy values and RNG state: more than tensors
    ckpt = load_checkpoint_file(str(work / 'epoch_1.pth'))
    assert 'message_hub' in ckpt and 'rng_state' in ckpt
    runner = build_runner(classifier_cfg(
        tmp_path, load_from=str(work / 'epoch_1.pth')))
    metrics = runner.test()
    assert 0 <= metrics['accuracy/top1'] <= 100
