"""Data-parallel training on the CPU through the ordinary OpenMMLab paths:
`mim train mmsegmentation CONFIG --launcher pytorch --gpus 2` and
`--launcher slurm` (gloo), with SyncBN in the adapter and heads, against one
process on the same global batch."""
import glob
import os
import stat

import pytest
import torch
from mmengine.runner import Runner

from mmvrwkv.apis import build_model
from mmvrwkv.utils import load_checkpoint_file
from ..helpers import (build_runner, dump, free_port, make_data, mim_exe, run,
                       tiny_seg_config)

ITERS = 3


def state(path):
    return load_checkpoint_file(str(path), map_location='cpu')


def full_batch_loss(cfg, ckpt):
    """Loss of a checkpoint on the 4 training images, eval-mode BN."""
    model = build_model(cfg)
    model.load_state_dict(state(ckpt)['state_dict'])
    model.eval()
    loader = Runner.build_dataloader(cfg.train_dataloader)
    with torch.no_grad():
        batch = model.data_preprocessor(next(iter(loader)), True)
        losses = model(**batch, mode='loss')
    return sum(v for k, v in losses.items() if 'loss' in k).item()


# Stand-ins for slurm's srun and scontrol on this one machine: srun starts
# --ntasks copies of the command with the variables a real srun gives each
# task (mim passes MASTER_PORT); scontrol lists the node names.
FAKE_SRUN = """#!/usr/bin/env bash
ntasks=1
while [[ $# -gt 0 && $1 == -* ]]; do
    case $1 in
        --ntasks=*) ntasks=${1#*=} ;;
        -p|-J|-n|-N) shift ;;
    esac
    shift
done
pids=()
for ((i = 0; i < ntasks; i++)); do
    SLURM_PROCID=$i SLURM_LOCALID=$i SLURM_NTASKS=$ntasks \\
        SLURM_NODELIST=localhost "$@" &
    pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
exit $rc
"""
FAKE_SCONTROL = """#!/usr/bin/env bash
[ "$1 $2" = "show hostnames" ] && echo "$3" | tr ',' '\\n'
"""


def slurm_bin(tmp_path):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for name, text in (('srun', FAKE_SRUN), ('scontrol', FAKE_SCONTROL)):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def launch(launcher, cfg_path, tmp_path):
    """`mim train` with 2 processes through ``launcher``."""
    cmd = [mim_exe(), 'train', 'mmsegmentation', cfg_path, '--launcher',
           launcher, '--gpus', '2', '--port', str(free_port())]
    if launcher == 'pytorch':
        return run(cmd)
    return run(cmd + ['--gpus-per-node', '2', '--partition', 'cpu'],
               bin_dir=slurm_bin(tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize('launcher', ['pytorch', 'slurm'])
def test_two_process_gloo_matches_single_process(tmp_path, launcher):
    data = make_data(str(tmp_path / 'data'), train=8, val=2, size=64)
    single = tiny_seg_config(data, str(tmp_path / 'single'),
                             max_iters=ITERS, batch_size=4)
    ddp = tiny_seg_config(data, str(tmp_path / 'ddp'), max_iters=ITERS,
                          batch_size=2)
    # the reference in this process (a subprocess costs ~10 s of imports)
    build_runner(single.copy()).train()
    # mim runs torch.distributed.launch or srun with 2 processes;
    # PortableRunner sets up gloo (no GPU) and converts SyncBN to
    # CPUSyncBatchNorm
    out = launch(launcher, dump(ddp, str(tmp_path / 'ddp.py')), tmp_path)
    assert "'backend': 'gloo'" in out or 'backend=\'gloo\'' in out

    # both ranks exited 0 (the launcher fails otherwise); rank 0 alone wrote
    # one checkpoint, with no temporary file left beside it
    files = sorted(os.path.basename(p) for p in glob.glob(
        str(tmp_path / 'ddp' / '*')) if os.path.isfile(p))
    assert files == ['ddp.py', f'iter_{ITERS}.pth', 'last_checkpoint'], files
    assert not glob.glob(str(tmp_path / 'ddp' / '.*.tmp'))

    a = state(tmp_path / 'single' / f'iter_{ITERS}.pth')['state_dict']
    b = state(tmp_path / 'ddp' / f'iter_{ITERS}.pth')['state_dict']
    assert a.keys() == b.keys()
    for key in a:
        if not a[key].is_floating_point():
            assert torch.equal(a[key], b[key]), key
            continue
        # parameters to float32 rounding; BN running means to 1e-6 abs
        # (SyncBN sums in float64, torch's BN in float32)
        tol = 1e-3 if 'running_' in key else 1e-5
        scale = max(a[key].abs().max().item(), 1e-3)
        err = (a[key] - b[key]).abs().max().item() / scale
        assert err < tol, f'{key}: relative difference {err:.2g}'
    loss_single = full_batch_loss(single, tmp_path / 'single' /
                                  f'iter_{ITERS}.pth')
    loss_ddp = full_batch_loss(single, tmp_path / 'ddp' / f'iter_{ITERS}.pth')
    assert abs(loss_single - loss_ddp) < 1e-5 * abs(loss_single)
