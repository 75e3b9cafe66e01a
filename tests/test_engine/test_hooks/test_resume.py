"""SIGKILL a training run after a checkpoint, resume it with --resume, and
get bit-identical final weights to an uninterrupted run (deterministic mode,
random flips and drop path, so the RNG state matters); in one process and
in a 2-process data-parallel run."""
import glob
import os
import re
import signal
import subprocess
import time

import pytest
import torch

import mmvrwkv  # noqa: F401
from mmvrwkv.engine.hooks.rng_state_hook import KEY, RANKS_KEY
from mmvrwkv.utils import load_checkpoint_file
from ..helpers import (ROOT, build_runner, dump, env, free_port, make_data,
                       mim_exe, run, tiny_seg_config, train_cmd)

ITERS, EVERY = 20, 5


def weights(path):
    return load_checkpoint_file(str(path), map_location='cpu')['state_dict']


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def descendants(pid):
    """Every process below ``pid`` (torch's launcher starts its ranks in
    sessions of their own, so a process-group kill would miss them)."""
    children = {}
    for entry in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open(f'/proc/{entry}/stat') as f:
                # the name in parentheses may hold spaces: split after it
                ppid = int(f.read().rsplit(')', 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


def kill_after_first_checkpoint(cmd, work_dir, timeout=300):
    """SIGKILL the command and every process it started (a launcher and
    its ranks, as a preempted job loses them) once a checkpoint exists."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(),
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    marker = os.path.join(work_dir, 'last_checkpoint')
    start = time.time()
    try:
        while not os.path.exists(marker):
            assert proc.poll() is None, 'training ended before a checkpoint'
            assert time.time() - start < timeout, 'no checkpoint written'
            time.sleep(0.02)
    finally:
        for pid in [proc.pid] + descendants(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
    return proc.returncode


def latest_checkpoint(work_dir):
    """The checkpoint ``last_checkpoint`` names, and its iteration; it is
    complete and no temporary file is left beside it."""
    with open(os.path.join(work_dir, 'last_checkpoint')) as f:
        latest = f.read().strip()
    assert KEY in load_checkpoint_file(latest, map_location='cpu')
    assert not glob.glob(os.path.join(work_dir, '.*.tmp'))
    return latest, int(re.search(r'iter_(\d+)\.pth', latest).group(1))


def logged(log, i, iters):
    # mmengine pads the iteration to the width of max_iters
    return re.search(rf'Iter\(train\) \[ *{i}/{iters}\]', log)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    # one thread here and in the subprocesses (env() sets OMP_NUM_THREADS=1)
    yield
    torch.use_deterministic_algorithms(False)


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    data = make_data(str(tmp_path / 'data'), train=8, val=2, size=64)

    def config(name):
        return tiny_seg_config(data, str(tmp_path / name), max_iters=ITERS,
                               batch_size=2, random=True,
                               ckpt_interval=EVERY)

    build_runner(config('full')).train()
    full = weights(tmp_path / 'full' / f'iter_{ITERS}.pth')

    work = str(tmp_path / 'killed')
    cfg_path = dump(config('killed'), str(tmp_path / 'killed.py'))
    assert kill_after_first_checkpoint(train_cmd(cfg_path), work) == \
        -signal.SIGKILL
    assert not os.path.exists(os.path.join(work, f'iter_{ITERS}.pth'))
    _, resumed_from = latest_checkpoint(work)
    assert 0 < resumed_from < ITERS

    log = run(train_cmd(cfg_path, '--resume'))
    assert logged(log, resumed_from + 1, ITERS)
    assert not logged(log, resumed_from, ITERS)
    assert same(weights(os.path.join(work, f'iter_{ITERS}.pth')), full)


@pytest.mark.slow
def test_resume_without_rng_state_diverges(tmp_path):
    """The control: the same resume from a checkpoint stripped of its RNG
    state does not reproduce the run (so the test above can fail)."""
    data = make_data(str(tmp_path / 'data'), train=8, val=2, size=64)
    cfg = tiny_seg_config(data, str(tmp_path / 'full'), max_iters=2 * EVERY,
                          batch_size=2, random=True, ckpt_interval=EVERY)
    build_runner(cfg.copy()).train()
    full = weights(tmp_path / 'full' / f'iter_{2 * EVERY}.pth')
    ckpt = load_checkpoint_file(str(tmp_path / 'full' / f'iter_{EVERY}.pth'),
                                map_location='cpu')
    del ckpt[KEY]
    stripped = str(tmp_path / 'stripped.pth')
    torch.save(ckpt, stripped)
    cfg.merge_from_dict(dict(work_dir=str(tmp_path / 'resumed'),
                             load_from=stripped, resume=True))
    build_runner(cfg).train()
    assert not same(
        weights(tmp_path / 'resumed' / f'iter_{2 * EVERY}.pth'), full)


DDP_ITERS = 10


def mim_ddp(cfg_path, *args):
    """`mim train` with 2 processes (gloo on the CPU, PortableRunner)."""
    return [mim_exe(), 'train', 'mmsegmentation', cfg_path, '--launcher',
            'pytorch', '--gpus', '2', '--port', str(free_port()), *args]


@pytest.mark.slow
def test_data_parallel_sigkill_then_resume_equals_uninterrupted(tmp_path):
    """Two ranks with different seeds (diff_rank_seed), so each rank's
    generators hold their own state: the launcher and both ranks are
    SIGKILLed after the first checkpoint, `--resume` restores every rank's
    state and ends bit-identical to the uninterrupted 2-rank run. The
    control resumes from the same checkpoint holding rank 0's state only
    (what was saved before the states were gathered): rank 1 restarts from
    its seed and the weights differ."""
    data = make_data(str(tmp_path / 'data'), train=8, val=2, size=64)

    def config(name, **extra):
        cfg = tiny_seg_config(data, str(tmp_path / name),
                              max_iters=DDP_ITERS, batch_size=2,
                              random=True, ckpt_interval=EVERY)
        cfg.randomness.diff_rank_seed = True
        cfg.merge_from_dict(extra)
        return dump(cfg, str(tmp_path / f'{name}.py'))

    run(mim_ddp(config('full')))
    full = weights(tmp_path / 'full' / f'iter_{DDP_ITERS}.pth')

    work = str(tmp_path / 'killed')
    cfg_path = config('killed')
    assert kill_after_first_checkpoint(mim_ddp(cfg_path), work) == \
        -signal.SIGKILL
    time.sleep(2)  # a surviving rank would write the final checkpoint
    assert not os.path.exists(os.path.join(work, f'iter_{DDP_ITERS}.pth'))
    latest, resumed_from = latest_checkpoint(work)
    assert 0 < resumed_from < DDP_ITERS
    ckpt = load_checkpoint_file(latest, map_location='cpu')
    ranks = ckpt[RANKS_KEY]
    assert len(ranks) == 2
    # the ranks' generators differ (else the test could not fail)
    assert not torch.equal(ranks[0]['torch'], ranks[1]['torch'])
    assert torch.equal(ranks[0]['torch'], ckpt[KEY]['torch'])

    log = run(mim_ddp(cfg_path, '--resume'))
    assert logged(log, resumed_from + 1, DDP_ITERS)
    assert not logged(log, resumed_from, DDP_ITERS)
    assert same(weights(os.path.join(work, f'iter_{DDP_ITERS}.pth')), full)

    del ckpt[RANKS_KEY]
    stripped = str(tmp_path / 'rank0_only.pth')
    torch.save(ckpt, stripped)
    # the mm train tools set cfg.resume from --resume, which then resumes
    # from load_from
    log = run(mim_ddp(config('control', load_from=stripped), '--resume'))
    assert 'continue from their seed' in log
    assert not same(
        weights(tmp_path / 'control' / f'iter_{DDP_ITERS}.pth'), full)
