"""A gloo process group for ``--launcher pytorch`` / ``slurm`` without GPUs.

mmengine's ``init_dist`` calls ``torch.cuda.set_device`` and so fails on a
CPU-only machine. :func:`init_cpu_process_group` sets up the group itself
(mmengine then skips ``init_dist``, as a group exists).
"""
import copy
import os
import subprocess
from typing import Optional

import torch.distributed as dist
from mmengine.logging import print_log

LAUNCHERS = ('pytorch', 'slurm')


def init_cpu_process_group(launcher: str, dist_cfg: dict) -> None:
    """Initialise the default process group of one rank on the CPU.

    Args:
        launcher (str): 'pytorch' (torchrun: rank and world size in the
            environment) or 'slurm' (srun: taken from the SLURM_* variables
            by :func:`torch_env_from_slurm`).
        dist_cfg (dict): the config's ``env_cfg.dist_cfg``: ``backend``
            (default 'gloo'; 'nccl', the mm default, needs GPUs and is
            replaced by 'gloo' with a warning), ``port`` (slurm only, default
            29500) and anything else ``torch.distributed.init_process_group``
            takes (e.g. ``timeout``).
    """
    if launcher not in LAUNCHERS:
        raise ValueError(f'launcher {launcher!r} is not one of: '
                         + ', '.join(LAUNCHERS))
    dist_cfg = copy.deepcopy(dict(dist_cfg))
    port = dist_cfg.pop('port', None)
    if launcher == 'slurm':
        torch_env_from_slurm(port)
    backend = dist_cfg.pop('backend', 'gloo')
    if backend == 'nccl':
        print_log(
            "env_cfg.dist_cfg.backend='nccl' needs GPUs; none found, so "
            "using 'gloo' (set --cfg-options "
            'env_cfg.dist_cfg.backend=gloo to silence this)',
            logger='current', level=30)
        backend = 'gloo'
    dist.init_process_group(backend=backend, **dist_cfg)


def torch_env_from_slurm(port: Optional[int] = None) -> None:
    """Set the variables torch's ``env://`` rendezvous reads (RANK,
    WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) from those srun sets,
    as mmengine's slurm initialisation does.

    Args:
        port (int, optional): MASTER_PORT. Defaults to None: an existing
            MASTER_PORT, else 29500. MASTER_ADDR is kept if set, otherwise
            it is the job's first host (``scontrol show hostnames``).

    Raises:
        RuntimeError: a variable srun sets is missing, or the first host
            cannot be found.
    """
    env = os.environ
    missing = [name for name in ('SLURM_PROCID', 'SLURM_NTASKS',
                                 'SLURM_NODELIST') if name not in env]
    if missing:
        raise RuntimeError(
            f"--launcher slurm needs the variables srun sets; missing: "
            f"{', '.join(missing)}. Start training with srun or with "
            "'mim train ... --launcher slurm'")
    if 'MASTER_ADDR' not in env:
        env['MASTER_ADDR'] = _first_slurm_host(env['SLURM_NODELIST'])
    if port is not None:
        env['MASTER_PORT'] = str(port)
    env.setdefault('MASTER_PORT', '29500')
    env['RANK'] = env['SLURM_PROCID']
    env['WORLD_SIZE'] = env['SLURM_NTASKS']
    env['LOCAL_RANK'] = env.get('SLURM_LOCALID', '0')


def _first_slurm_host(node_list: str) -> str:
    command = ['scontrol', 'show', 'hostnames', node_list]
    try:
        result = subprocess.run(command, capture_output=True, text=True)
        hosts, why = result.stdout.split(), result.stderr.strip()
    except FileNotFoundError:
        hosts, why = [], 'scontrol is not on PATH'
    if not hosts:
        raise RuntimeError(
            f"could not find the job's first host with "
            f"'{' '.join(command)}' ({why}); set MASTER_ADDR")
    return hosts[0]
