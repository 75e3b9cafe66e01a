"""SIGKILL a training run after a checkpoint, resume it with --resume, and
get bit-identical final weights to an uninterrupted run (deterministic mode,
random flips and drop path, so the RNG state matters)."""
import glob
import os
import re
import signal
import subprocess
import time

import pytest
import torch

import mmvrwkv  # noqa: F401
from mmvrwkv.engine.hooks.rng_state_hook import KEY
from .dense_helpers import ROOT, make_data
from .reliability_helpers import (build_runner, dump, env, run,
                                  tiny_seg_config, train_cmd)

ITERS, EVERY = 20, 5


def weights(path):
    return torch.load(path, map_location='cpu',
                      weights_only=True)['state_dict']


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def kill_after_first_checkpoint(cmd, work_dir, timeout=300):
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(),
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    marker = os.path.join(work_dir, 'last_checkpoint')
    start = time.time()
    while not os.path.exists(marker):
        assert proc.poll() is None, 'training ended before a checkpoint'
        assert time.time() - start < timeout, 'no checkpoint written'
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc.returncode


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
    # the pointer names a complete checkpoint; no temporary file is left
    with open(os.path.join(work, 'last_checkpoint')) as f:
        latest = f.read().strip()
    resumed_from = int(re.search(r'iter_(\d+)\.pth', latest).group(1))
    assert 0 < resumed_from < ITERS
    assert KEY in torch.load(latest, map_location='cpu', weights_only=True)
    assert not glob.glob(os.path.join(work, '.*.tmp'))

    log = run(train_cmd(cfg_path, '--resume'))

    # mmengine pads the iteration to the width of max_iters
    def logged(i):
        return re.search(rf'Iter\(train\) \[ *{i}/{ITERS}\]', log)

    assert logged(resumed_from + 1) and not logged(resumed_from)
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
    ckpt = torch.load(tmp_path / 'full' / f'iter_{EVERY}.pth',
                      map_location='cpu', weights_only=True)
    del ckpt[KEY]
    stripped = str(tmp_path / 'stripped.pth')
    torch.save(ckpt, stripped)
    cfg.merge_from_dict(dict(work_dir=str(tmp_path / 'resumed'),
                             load_from=stripped, resume=True))
    build_runner(cfg).train()
    assert not same(
        weights(tmp_path / 'resumed' / f'iter_{2 * EVERY}.pth'), full)
