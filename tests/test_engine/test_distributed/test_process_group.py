"""The gloo process group of ``--launcher slurm`` on CPU-only machines:
the errors name what is missing (the 2-process runs are in
test_data_parallel.py)."""
import logging
import os

import pytest
import torch.distributed as dist

from mmvrwkv.engine.distributed import (init_cpu_process_group,
                                        torch_env_from_slurm)


def test_slurm_launcher_errors_name_what_is_missing(monkeypatch, tmp_path):
    for name in ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST',
                 'MASTER_ADDR'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('SLURM_PROCID', '0')
    with pytest.raises(RuntimeError,
                       match='missing: SLURM_NTASKS, SLURM_NODELIST.*srun'):
        torch_env_from_slurm()
    monkeypatch.setenv('SLURM_NTASKS', '2')
    monkeypatch.setenv('SLURM_NODELIST', 'node[1-2]')
    monkeypatch.setenv('PATH', str(tmp_path))  # no scontrol here
    with pytest.raises(RuntimeError,
                       match='scontrol is not on PATH.*set MASTER_ADDR'):
        torch_env_from_slurm()


def test_unknown_launcher_is_named():
    with pytest.raises(ValueError, match="launcher 'mpi' is not one of"):
        init_cpu_process_group('mpi', {})


def test_slurm_variables_become_torch_ones(monkeypatch):
    for name in ('MASTER_PORT', 'LOCAL_RANK', 'RANK', 'WORLD_SIZE'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('SLURM_PROCID', '1')
    monkeypatch.setenv('SLURM_NTASKS', '2')
    monkeypatch.setenv('SLURM_NODELIST', 'node[1-2]')
    monkeypatch.setenv('MASTER_ADDR', 'node1')  # kept: no scontrol call
    torch_env_from_slurm(port=1234)
    assert {k: os.environ[k] for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK',
                                       'MASTER_ADDR', 'MASTER_PORT')} == \
        dict(RANK='1', WORLD_SIZE='2', LOCAL_RANK='0', MASTER_ADDR='node1',
             MASTER_PORT='1234')


def test_nccl_becomes_gloo_without_gpus(monkeypatch):
    """One rank through the torchrun path: the mm default backend (nccl)
    is replaced by gloo, with a warning."""
    from mmengine.logging import MMLogger

    from ..helpers import free_port
    assert not dist.is_initialized()
    for name, value in dict(RANK='0', WORLD_SIZE='1', MASTER_ADDR='127.0.0.1',
                            MASTER_PORT=str(free_port())).items():
        monkeypatch.setenv(name, value)
    logger = MMLogger.get_instance('test_process_group')
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        init_cpu_process_group('pytorch', dict(backend='nccl', port=1))
        assert dist.get_backend() == 'gloo'
        assert any("'nccl' needs GPUs" in r.getMessage() for r in records)
    finally:
        logger.removeHandler(handler)
        if dist.is_initialized():
            dist.destroy_process_group()
