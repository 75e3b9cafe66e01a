"""An mmengine Runner that also trains data-parallel and with ``--amp`` on
CPU-only machines."""
import copy

import torch
from mmengine.device import get_device
from mmengine.dist import is_distributed
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from ..distributed import LAUNCHERS, init_cpu_process_group, wrap_cpu_ddp
from ..optimizers import cpu_amp_config
from .dataset_check import build_dataset_checked

# The custom hook event every rank calls before a checkpoint is saved.
# mmengine's ``save_checkpoint`` (and so ``before_save_checkpoint``) runs on
# rank 0 only, so a hook cannot run a collective there; ``Runner.call_hook``
# calls any method of this name the hooks define.
BEFORE_SAVE_ON_ALL_RANKS = 'before_save_checkpoint_on_all_ranks'


def _on_cpu() -> bool:
    return get_device() == 'cpu'


@RUNNERS.register_module()
class PortableRunner(Runner):
    """:class:`mmengine.runner.Runner` that runs the same config on GPUs and
    on CPU-only machines. On a GPU it is the plain Runner. On the CPU:

    - ``--launcher pytorch`` (``torchrun``, ``mim train --launcher pytorch
      --gpus N``) and ``--launcher slurm`` (``srun``, ``mim train
      --launcher slurm``) initialise a gloo process group
      (:func:`~mmvrwkv.engine.distributed.init_cpu_process_group`) instead
      of mmengine's ``init_dist``, which calls ``torch.cuda.set_device``.
    - the model is wrapped in DDP without ``device_ids`` and its SyncBN
      layers become :class:`~mmvrwkv.engine.distributed.CPUSyncBatchNorm`
      (:func:`~mmvrwkv.engine.distributed.wrap_cpu_ddp`); in a single
      process mmengine reverts SyncBN to BN as usual.
    - ``optim_wrapper.type='AmpOptimWrapper'`` (what ``--amp`` sets) builds
      :class:`~mmvrwkv.engine.CPUAmpOptimWrapper`: bfloat16 autocast,
      no loss scaling (:func:`~mmvrwkv.engine.optimizers.cpu_amp_config`).

    On any device:

    - a dataset that is empty, or whose annotation file is not JSON, is
      reported with its file and the likely cause
      (:func:`~mmvrwkv.engine.runner.build_dataset_checked`);
    - every rank calls the hooks' ``before_save_checkpoint_on_all_ranks``
      before a checkpoint is saved (:class:`~mmvrwkv.engine.RNGStateHook`
      gathers the ranks' random-number states there).

    Select it in a config with ``runner_type = 'PortableRunner'``; the
    mmdet/mmseg/mmpretrain ``tools/train.py`` (and so ``mim train``) build
    ``runner_type`` from the registry.
    """

    def setup_env(self, env_cfg: dict) -> None:
        if self._launcher in LAUNCHERS and _on_cpu() and \
                not is_distributed():
            init_cpu_process_group(self._launcher,
                                   env_cfg.get('dist_cfg', {}))
        # with a process group in place, mmengine skips its init_dist
        super().setup_env(env_cfg)

    def wrap_model(self, model_wrapper_cfg, model):
        if not (self.distributed and _on_cpu()) or is_model_wrapper(model):
            return super().wrap_model(model_wrapper_cfg, model)
        return wrap_cpu_ddp(
            model, model_wrapper_cfg, sync_bn=self.cfg.get('sync_bn', None),
            find_unused_parameters=self.cfg.get('find_unused_parameters',
                                                False))

    def build_optim_wrapper(self, optim_wrapper):
        if isinstance(optim_wrapper, dict) and \
                optim_wrapper.get('type') == 'AmpOptimWrapper' and \
                not torch.cuda.is_available() and _on_cpu():
            optim_wrapper = cpu_amp_config(optim_wrapper)
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

    def save_checkpoint(self, *args, **kwargs):
        """:meth:`Runner.save_checkpoint`, after the hooks'
        ``before_save_checkpoint_on_all_ranks`` ran on every rank (the
        CheckpointHook calls this method on every rank; mmengine's version
        returns at once on all but rank 0)."""
        self.call_hook(BEFORE_SAVE_ON_ALL_RANKS)
        return super().save_checkpoint(*args, **kwargs)
