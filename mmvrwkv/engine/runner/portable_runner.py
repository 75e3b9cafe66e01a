"""An mmengine Runner that also trains data-parallel and with ``--amp`` on
CPU-only machines."""
import copy
import json
import os
import subprocess

import torch
import torch.distributed as dist
from mmengine.dataset import BaseDataset
from mmengine.device import get_device
from mmengine.dist import is_distributed
from mmengine.logging import print_log
from mmengine.model import convert_sync_batchnorm, is_model_wrapper
from mmengine.registry import DATASETS, MODEL_WRAPPERS, RUNNERS
from mmengine.runner import Runner

from ...models.layers.cpu_sync_bn import convert_to_cpu_sync_bn


def _on_cpu() -> bool:
    return get_device() == 'cpu'


@RUNNERS.register_module()
class PortableRunner(Runner):
    """:class:`mmengine.runner.Runner` that runs the same config on GPUs and
    on CPU-only machines. On a GPU it is the plain Runner. On the CPU:

    - ``--launcher pytorch`` (``torchrun``, ``mim train --launcher pytorch
      --gpus N``) and ``--launcher slurm`` (``srun``, ``mim train
      --launcher slurm``) initialise a gloo process group instead of calling
      ``torch.cuda.set_device`` (mmengine's ``init_dist`` does, and fails
      without a GPU). For slurm, rank, world size and master address come
      from the variables srun sets, as in mmengine.
      ``env_cfg.dist_cfg.backend`` is used as given;
      ``nccl`` (the mm default) needs GPUs, so it is replaced by gloo with a
      warning. Other ``dist_cfg`` keys (e.g. ``timeout``) are passed on.
    - the model is wrapped in DDP without ``device_ids`` (a CPU module
      cannot have them), and SyncBN layers become
      :class:`~mmvrwkv.models.layers.CPUSyncBatchNorm` (torch's SyncBN
      rejects CPU tensors); in a single process mmengine reverts SyncBN to
      BN as usual.
    - ``optim_wrapper.type='AmpOptimWrapper'`` (what ``--amp`` sets) builds
      :class:`~mmvrwkv.engine.CPUAmpOptimWrapper`: bfloat16 autocast,
      no loss scaling.

    - a dataset that is empty, or whose annotation file is not JSON, is
      reported with its file and the likely cause instead of numpy's "need
      at least one array to concatenate" or a bare JSONDecodeError.

    Select it in a config with ``runner_type = 'PortableRunner'``; the
    mmdet/mmseg/mmpretrain ``tools/train.py`` (and so ``mim train``) build
    ``runner_type`` from the registry.
    """

    def setup_env(self, env_cfg: dict) -> None:
        if self._launcher in ('pytorch', 'slurm') and _on_cpu() and \
                not is_distributed():
            dist_cfg = copy.deepcopy(dict(env_cfg.get('dist_cfg', {})))
            port = dist_cfg.pop('port', None)
            if self._launcher == 'slurm':
                _torch_env_from_slurm(port)
            self._init_cpu_process_group(dist_cfg)
        # with a process group in place, mmengine skips its init_dist
        super().setup_env(env_cfg)

    @staticmethod
    def _init_cpu_process_group(dist_cfg: dict) -> None:
        dist_cfg = copy.deepcopy(dict(dist_cfg))
        backend = dist_cfg.pop('backend', 'gloo')
        if backend == 'nccl':
            print_log(
                "env_cfg.dist_cfg.backend='nccl' needs GPUs; none found, so "
                "using 'gloo' (set --cfg-options "
                'env_cfg.dist_cfg.backend=gloo to silence this)',
                logger='current', level=30)
            backend = 'gloo'
        dist.init_process_group(backend=backend, **dist_cfg)

    def wrap_model(self, model_wrapper_cfg, model):
        if not (self.distributed and _on_cpu()) or is_model_wrapper(model):
            return super().wrap_model(model_wrapper_cfg, model)
        model = model.to('cpu')
        sync_bn = self.cfg.get('sync_bn', None)
        if sync_bn is not None:
            model = convert_sync_batchnorm(model, sync_bn)
        model = convert_to_cpu_sync_bn(model)
        cfg = dict(
            type='MMDistributedDataParallel',
            broadcast_buffers=False,
            find_unused_parameters=self.cfg.get('find_unused_parameters',
                                                False))
        cfg.update(model_wrapper_cfg or {})
        return MODEL_WRAPPERS.build(cfg, default_args=dict(module=model))

    def build_optim_wrapper(self, optim_wrapper):
        if isinstance(optim_wrapper, dict) and \
                optim_wrapper.get('type') == 'AmpOptimWrapper' and \
                not torch.cuda.is_available() and _on_cpu():
            optim_wrapper = copy.deepcopy(optim_wrapper)
            optim_wrapper['type'] = 'CPUAmpOptimWrapper'
            # float16 loss scaling has no meaning for bfloat16
            optim_wrapper.pop('loss_scale', None)
            optim_wrapper.pop('use_fsdp', None)
            if optim_wrapper.get('dtype') in (None, 'float16', torch.float16):
                optim_wrapper['dtype'] = 'bfloat16'
            print_log('no GPU: AMP runs as bfloat16 autocast on the CPU '
                      '(CPUAmpOptimWrapper, no loss scaling)',
                      logger='current')
        return super().build_optim_wrapper(optim_wrapper)

    @staticmethod
    def build_dataloader(dataloader, seed=None, diff_rank_seed=False):
        if isinstance(dataloader, dict) and isinstance(
                dataloader.get('dataset'), dict):
            dataloader = copy.copy(dataloader)
            dataloader['dataset'] = build_dataset_checked(
                dataloader['dataset'])
        return Runner.build_dataloader(dataloader, seed, diff_rank_seed)


def _torch_env_from_slurm(port=None) -> None:
    """Set the variables torch's ``env://`` rendezvous reads (RANK,
    WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) from those srun sets,
    as mmengine's slurm initialisation does (MASTER_ADDR and MASTER_PORT
    are kept if given; the address is otherwise the first host of the job,
    the port ``port`` or 29500)."""
    env = os.environ
    missing = [name for name in ('SLURM_PROCID', 'SLURM_NTASKS',
                                 'SLURM_NODELIST') if name not in env]
    if missing:
        raise RuntimeError(
            f"--launcher slurm needs the variables srun sets; missing: "
            f"{', '.join(missing)}. Start training with srun or with "
            "'mim train ... --launcher slurm'")
    if 'MASTER_ADDR' not in env:
        command = ['scontrol', 'show', 'hostnames', env['SLURM_NODELIST']]
        try:
            result = subprocess.run(command, capture_output=True, text=True)
            hosts, why = result.stdout.split(), result.stderr.strip()
        except FileNotFoundError:
            hosts, why = [], 'scontrol is not on PATH'
        if not hosts:
            raise RuntimeError(
                f"could not find the job's first host with "
                f"'{' '.join(command)}' ({why}); set MASTER_ADDR")
        env['MASTER_ADDR'] = hosts[0]
    if port is not None:
        env['MASTER_PORT'] = str(port)
    env.setdefault('MASTER_PORT', '29500')
    env['RANK'] = env['SLURM_PROCID']
    env['WORLD_SIZE'] = env['SLURM_NTASKS']
    env['LOCAL_RANK'] = env.get('SLURM_LOCALID', '0')


def build_dataset_checked(cfg: dict):
    """Build and fully initialise a dataset; say which file is at fault when
    it cannot be read or yields no samples."""
    cfg = copy.deepcopy(cfg)
    where = cfg.get('ann_file') or cfg.get('data_prefix') or ''
    where = f"{cfg.get('type')} (data_root={cfg.get('data_root')!r}, " \
        f'{where!r})'
    empty = (f'the dataset {where} has no samples. Check data_root, '
             'ann_file and data_prefix; detection datasets also drop images '
             'without instances (filter_cfg=dict(filter_empty_gt=True)), so '
             'an annotation file without annotations leaves nothing to '
             'train on')
    kind = cfg.get('type')
    if isinstance(kind, str):
        with DATASETS.switch_scope_and_registry(None) as registry:
            kind = registry.get(kind)
    if isinstance(kind, type) and issubclass(kind, BaseDataset):
        cfg['lazy_init'] = True  # build first, then load the annotations
    try:
        dataset = DATASETS.build(cfg)
        if hasattr(dataset, 'full_init'):
            dataset.full_init()
    except json.JSONDecodeError as error:
        raise ValueError(
            f'the annotation file of {where} is not valid JSON ({error}); '
            'it is empty or truncated: regenerate or download it '
            'again') from error
    except ValueError as error:
        # mmengine serialises the sample list with np.concatenate, which
        # fails this way on an empty list
        if 'need at least one array' in str(error):
            raise ValueError(empty) from error
        raise
    if len(dataset) == 0:
        raise ValueError(empty)
    return dataset
