"""RNGStateHook in this process: a tiny runner trains, saves, and a second
runner resumes from the checkpoint with its generators perturbed; the
random numbers drawn after resuming (in the data pipeline and in the
model) are those of the uninterrupted run. The SIGKILL and data-parallel
runs are in test_resume.py."""
import itertools
import logging
import random
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from torch.utils.data import Dataset

import mmvrwkv  # noqa: F401  (registers the hook and the runner)
from mmvrwkv.engine import CheckpointSafetyHook, PortableRunner, RNGStateHook
from mmvrwkv.engine.hooks.rng_state_hook import KEY, RANKS_KEY, get_rng_state
from mmvrwkv.engine.runner import BEFORE_SAVE_ON_ALL_RANKS
from mmvrwkv.utils import load_checkpoint_file

ITERS = 4  # per run; a checkpoint halfway
_names = itertools.count()


class RandomImages(Dataset):
    """Samples drawn from the global generators, as random augmentation
    draws them."""

    def __len__(self):
        return 4

    def __getitem__(self, index):
        noise = torch.rand(2) + float(np.random.rand()) + random.random()
        return dict(inputs=noise + index)


class Toy(BaseModel):
    """One linear layer and a random draw per step (as dropout or drop path
    draws); records what it saw."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)
        self.seen = []

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = torch.stack(inputs)
        drop = torch.rand(1)
        self.seen.append(torch.cat([x.flatten(), drop]))
        out = (self.linear(x) * drop).mean()
        return dict(loss=out) if mode == 'loss' else out


class EventRecorder(Hook):
    """Records when PortableRunner calls the all-ranks event."""
    priority = 'LOWEST'

    def __init__(self):
        self.calls = 0

    def before_save_checkpoint_on_all_ranks(self, runner):
        self.calls += 1


def runner(work_dir, by_epoch, hooks, **kwargs):
    if by_epoch:
        train_cfg = dict(by_epoch=True, max_epochs=2)
        sampler = dict(type='DefaultSampler', shuffle=True)
    else:
        train_cfg = dict(by_epoch=False, max_iters=ITERS)
        sampler = dict(type='InfiniteSampler', shuffle=True)
    return PortableRunner(
        model=Toy(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=RandomImages(), sampler=sampler,
                              batch_size=2, num_workers=0),
        train_cfg=train_cfg,
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1
                                           if by_epoch else ITERS // 2,
                                           by_epoch=by_epoch)),
        # as in the paper configs (the checkpoints load weights-only)
        custom_hooks=[CheckpointSafetyHook()] + hooks,
        randomness=dict(seed=0), log_level='WARNING',
        experiment_name=f'rng_state_hook_{next(_names)}',
        **kwargs)


def perturb():
    torch.manual_seed(1234)
    np.random.seed(1234)
    random.seed(1234)


@pytest.mark.parametrize('by_epoch', [True, False], ids=['epochs', 'iters'])
def test_resume_draws_what_the_uninterrupted_run_draws(tmp_path, by_epoch):
    recorder = EventRecorder()
    full = runner(tmp_path / 'full', by_epoch, [RNGStateHook(), recorder])
    full.train()
    assert recorder.calls == 2  # every checkpoint, before it was written
    ckpt = tmp_path / 'full' / ('epoch_1.pth' if by_epoch else
                                f'iter_{ITERS // 2}.pth')
    saved = load_checkpoint_file(str(ckpt))[KEY]  # weights only
    second_half = full.model.seen[ITERS // 2:]

    resumed = runner(tmp_path / 'resumed', by_epoch, [RNGStateHook()],
                     load_from=str(ckpt), resume=True)
    perturb()
    assert not torch.equal(get_rng_state()['torch'], saved['torch'])
    resumed.train()
    assert resumed.iter == ITERS
    assert len(resumed.model.seen) == len(second_half) == ITERS // 2
    for got, want in zip(resumed.model.seen, second_half):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_without_the_hook_the_resumed_run_differs(tmp_path):
    """The control: the same resume, perturbed, without the hook."""
    full = runner(tmp_path / 'full', False, [RNGStateHook()])
    full.train()
    resumed = runner(tmp_path / 'resumed', False, [],
                     load_from=str(tmp_path / 'full' / 'iter_2.pth'),
                     resume=True)
    perturb()
    resumed.train()
    assert not torch.equal(resumed.model.seen[0], full.model.seen[2])


@contextmanager
def logged_records(name):
    """The records logged to the logger ``name`` inside the block."""
    logger = logging.getLogger(name)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        yield logger, records
    finally:
        logger.removeHandler(handler)


def test_hook_takes_the_runner_event():
    assert callable(getattr(RNGStateHook, BEFORE_SAVE_ON_ALL_RANKS))


def test_resume_with_another_world_size_warns_and_restores_rank0():
    """A 2-rank checkpoint resumed by one process: rank 0's state is
    restored and the warning names the mismatch."""

    rank0 = get_rng_state()
    torch.rand(3)  # rank 1 stands for any other state
    rank1 = get_rng_state()
    with logged_records('test_rng_state_world_size') as (logger, records):
        runner = SimpleNamespace(logger=logger, _resume=True)
        hook = RNGStateHook()
        hook.after_load_checkpoint(
            runner, {KEY: rank0, RANKS_KEY: [rank0, rank1]})
        assert len(records) == 1
        assert 'state of 2 process(es), this run has 1' in \
            records[0].getMessage()
        assert torch.equal(hook._pending['torch'], rank0['torch'])
        # a single-process checkpoint in a single process: no warning
        hook.after_load_checkpoint(runner, {KEY: rank1})
        assert len(records) == 1
        assert torch.equal(hook._pending['torch'], rank1['torch'])


def test_loading_without_resume_restores_nothing_and_warns_nothing():
    """``load_from`` without ``--resume`` (fine-tuning, ``mim test``): the
    run starts from its seed, whatever the checkpoint holds."""
    with logged_records('test_rng_state_load_from') as (logger, records):
        runner = SimpleNamespace(logger=logger, _resume=False)
        hook = RNGStateHook()
        hook.after_load_checkpoint(runner, {})
        hook.after_load_checkpoint(runner, {KEY: get_rng_state()})
        assert records == [] and hook._pending is None
        runner._resume = True
        hook.after_load_checkpoint(runner, {})
        assert 'has no random-number state' in records[0].getMessage()
