"""Save and restore the random-number state with each checkpoint."""
import random

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ..runner import PortableRunner

KEY = 'rng_state'
# every rank's state, in rank order, in checkpoints of data-parallel runs
RANKS_KEY = 'rng_state_ranks'


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

    Data-parallel runs: only rank 0 writes the checkpoint
    (``Runner.save_checkpoint`` is ``master_only``, so
    ``before_save_checkpoint`` runs on rank 0 alone), but every rank calls
    it. :class:`~mmvrwkv.engine.PortableRunner` calls the hook event
    ``before_save_checkpoint_on_all_ranks`` on every rank first, where this
    hook gathers all ranks' states into rank 0 (one ``all_gather_object``
    per checkpoint, none per iteration). The checkpoint keeps rank 0's
    state under ``rng_state`` and the list under ``rng_state_ranks``; on
    resume each rank takes its own. Resumed with another number of
    processes, rank 0 restores its state and the other ranks continue from
    their seed, with a warning. With another runner, data-parallel
    checkpoints hold rank 0's state only (a warning says so).

    The state is restored where the uninterrupted run would draw its next
    random number: before the first epoch after resuming (epoch-based
    loops), or just before the first new batch is loaded (iteration-based
    loops, after the already-trained batches have been skipped).
    """
    priority = 'VERY_LOW'

    def __init__(self):
        self._pending = None
        self._gathered = None

    def before_run(self, runner) -> None:
        _, world_size = get_dist_info()
        if world_size > 1 and not isinstance(runner, PortableRunner):
            runner.logger.warning(
                "RNGStateHook saves every rank's random-number state with "
                "runner_type='PortableRunner' only; with "
                f"{type(runner).__name__} the checkpoints hold rank 0's "
                'state, and a resumed run will not match an uninterrupted '
                'one')

    def before_save_checkpoint_on_all_ranks(self, runner) -> None:
        """Gather every rank's state into rank 0 (a collective: every rank
        calls this, from :meth:`PortableRunner.save_checkpoint`)."""
        rank, world_size = get_dist_info()
        if world_size > 1:
            states = all_gather_object(get_rng_state())
            self._gathered = states if rank == 0 else None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[KEY] = get_rng_state()
        gathered, self._gathered = self._gathered, None
        if gathered is not None:
            checkpoint[RANKS_KEY] = gathered

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Restore on resume only: a checkpoint loaded without ``--resume``
        (``load_from`` to fine-tune or test) starts from the seed, as the
        run's config says, and needs no state and no warning."""
        if not getattr(runner, '_resume', False):
            return
        if KEY not in checkpoint:
            runner.logger.warning(
                'the checkpoint has no random-number state (it was not '
                'saved with RNGStateHook); training continues from the '
                "seed's state, so it will not match an uninterrupted run")
            return
        rank, world_size = get_dist_info()
        ranks = checkpoint.get(RANKS_KEY)
        if world_size == 1 and ranks is None:
            self._pending = checkpoint[KEY]
        elif ranks is not None and len(ranks) == world_size:
            self._pending = ranks[rank]
        else:
            saved = 1 if ranks is None else len(ranks)
            runner.logger.warning(
                f'the checkpoint holds the random-number state of {saved} '
                f'process(es), this run has {world_size}: rank 0 restores '
                "its state, the other ranks continue from their seed's "
                'state, so the run will not match an uninterrupted one')
            if rank == 0:
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
