"""Save and restore the random-number state with each checkpoint."""
import random

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

KEY = 'rng_state'


def get_rng_state() -> dict:
    """The state of Python's, numpy's and torch's (CPU and CUDA) global
    generators."""
    state = dict(python=random.getstate(), numpy=np.random.get_state(),
                 torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        cuda = state['cuda']
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:  # a different GPU count: restore what maps one to one
            torch.cuda.set_rng_state(cuda[0])


class _RestoreBeforeNext:
    """Iterator proxy that restores the RNG state just before batch
    ``skip + 1`` is drawn, i.e. after IterBasedTrainLoop has replayed the
    ``skip`` batches already trained on (replaying loads them through the
    random pipeline again, which would consume the restored state)."""

    def __init__(self, iterator, skip: int, state: dict):
        self._iterator, self._left, self._state = iterator, skip, state

    def __iter__(self):
        return self

    def __next__(self):
        if self._state is not None and self._left == 0:
            set_rng_state(self._state)
            self._state = None
        self._left -= 1
        return next(self._iterator)

    def __getattr__(self, name):
        return getattr(self._iterator, name)


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Store the random-number state in every checkpoint and restore it
    on resume, so that a resumed run draws the same random numbers (data
    augmentation, dropout, drop path) as an uninterrupted one.

    mmengine's checkpoints hold the model, optimizer, schedulers and the
    iteration, but not the generators' state: after ``--resume`` training
    continues from the seed's initial state instead.

    In data-parallel runs only rank 0 writes checkpoints, so only rank 0's
    state is restored; the other ranks continue from their seed's state
    (see docs/reliability.md).

    The state is restored where the uninterrupted run would draw its next
    random number: before the first epoch after resuming (epoch-based
    loops), or just before the first new batch is loaded (iteration-based
    loops, after the already-trained batches have been skipped).
    """
    priority = 'VERY_LOW'

    def __init__(self):
        self._pending = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[KEY] = get_rng_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if KEY not in checkpoint:
            runner.logger.warning(
                'the checkpoint has no random-number state (it was not '
                'saved with RNGStateHook); training continues from the '
                "seed's state, so it will not match an uninterrupted run")
            return
        if runner.rank == 0:
            self._pending = checkpoint[KEY]

    def before_train_epoch(self, runner) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        loop = runner.train_loop
        if hasattr(loop, 'dataloader_iterator') and runner.iter > 0:
            loop.dataloader_iterator = _RestoreBeforeNext(
                loop.dataloader_iterator, runner.iter, state)
        else:
            set_rng_state(state)
