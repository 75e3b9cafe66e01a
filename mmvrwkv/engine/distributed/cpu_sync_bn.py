"""Synchronised BatchNorm that also works on CPU process groups (gloo).

torch's ``SyncBatchNorm`` (the ``SyncBN`` of mmcv configs) refuses CPU
tensors, and DDP refuses a CPU model that contains one, so a paper config
cannot train data-parallel on CPU-only machines. :class:`CPUSyncBatchNorm`
computes the same statistics over the whole global batch with two
``all_reduce`` calls, which any backend supports, and
:func:`convert_to_cpu_sync_bn` swaps it in for torch's layers.
"""
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm


class _AllReduceSum(torch.autograd.Function):
    """Sum over all ranks. Every rank's loss depends on every rank's input
    through the sum, so the gradient is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        x = x.clone()
        dist.all_reduce(x, group=group)
        return x

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


def _distributed(group) -> bool:
    return dist.is_available() and dist.is_initialized() and \
        dist.get_world_size(group) > 1


@MODELS.register_module('CPUSyncBN')
class CPUSyncBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics are those of the global batch.

    In training mode inside a process group of more than one rank the mean
    and variance are all-reduced (sums in float64, so the result matches a
    single-process BatchNorm over the concatenated batch); otherwise, and
    in eval mode, it is plain BatchNorm. Works with any backend and device;
    on GPUs torch's fused ``SyncBatchNorm`` is faster, which is why the
    runner (:func:`~mmvrwkv.engine.distributed.wrap_cpu_ddp`) only converts
    to this class when training on the CPU.

    Args: as :class:`torch.nn.BatchNorm2d`, plus
        process_group (ProcessGroup, optional): ranks to synchronise.
            Defaults to None (the world).
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, process_group=None, device=None,
                 dtype=None):
        super().__init__(num_features, eps, momentum, affine,
                         track_running_stats, device, dtype)
        self.process_group = process_group

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f'CPUSyncBatchNorm expects (N, C, ...) input, '
                             f'got {input.dim()}D')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not (self.training and _distributed(self.process_group)):
            return self._plain(x)
        dims = [0] + list(range(2, x.dim()))
        x64 = x.double()
        count = x.new_full((1, ), x.numel() // x.shape[1], dtype=torch.double)
        stats = torch.cat([x64.sum(dims), (x64 * x64).sum(dims), count])
        stats = _AllReduceSum.apply(stats, self.process_group)
        C = x.shape[1]
        n = stats[-1]
        mean = stats[:C] / n
        var = (stats[C:2 * C] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(),
                                       n.item())
        shape = [1, C] + [1] * (x.dim() - 2)
        y = (x64 - mean.view(shape)) * torch.rsqrt(var.view(shape) +
                                                   self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean, var, n):
        self.num_batches_tracked.add_(1)
        factor = self.momentum if self.momentum is not None else \
            1.0 / float(self.num_batches_tracked)
        unbiased = var * n / max(n - 1, 1)
        self.running_mean.mul_(1 - factor).add_(factor * mean)
        self.running_var.mul_(1 - factor).add_(factor * unbiased)

    def _plain(self, x):
        use_batch = self.training or not self.track_running_stats
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = self.momentum if self.momentum is not None else \
                1.0 / float(self.num_batches_tracked)
        else:
            factor = 0.0
        return F.batch_norm(x, self.running_mean, self.running_var,
                            self.weight, self.bias, use_batch, factor,
                            self.eps)


def _sync_bn_types():
    types = [nn.SyncBatchNorm]
    try:
        from mmcv.ops import SyncBatchNorm as MMCVSyncBatchNorm
        types.append(MMCVSyncBatchNorm)
    except ImportError:  # mmcv built without ops
        pass
    return tuple(types)


def convert_to_cpu_sync_bn(module: nn.Module, process_group=None) -> nn.Module:
    """Replace torch's (and mmcv's) SyncBatchNorm layers by
    :class:`CPUSyncBatchNorm`, keeping parameters, buffers and mode.

    Args:
        module (nn.Module): model, changed in place where possible.
        process_group (ProcessGroup, optional): ranks to synchronise.

    Returns:
        nn.Module: the converted module (a new object if ``module`` itself
        was a SyncBatchNorm).
    """
    if isinstance(module, _sync_bn_types()):
        new = CPUSyncBatchNorm(module.num_features, module.eps,
                               module.momentum, module.affine,
                               module.track_running_stats, process_group)
        new.load_state_dict(module.state_dict())
        if module.affine:
            new.weight.requires_grad_(module.weight.requires_grad)
            new.bias.requires_grad_(module.bias.requires_grad)
        new.train(module.training)
        return new
    for name, child in module.named_children():
        converted = convert_to_cpu_sync_bn(child, process_group)
        if converted is not child:
            setattr(module, name, converted)
    return module
