"""CPUSyncBatchNorm in a 2-process gloo group equals BatchNorm over the
concatenated batch (output, every gradient, running statistics)."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from mmvrwkv.engine.distributed import CPUSyncBatchNorm, convert_to_cpu_sync_bn
from ..helpers import free_port

WORLD = 2


def make_batch():
    g = torch.Generator().manual_seed(0)
    # uneven per-rank batch sizes (3 and 2) and a large mean offset, where
    # averaging per-rank statistics or a float32 E[x^2]-E[x]^2 would be off
    x = torch.randn(5, 4, 6, 7, generator=g, dtype=torch.float64) * 3 + 50
    grad = torch.randn(5, 4, 6, 7, generator=g, dtype=torch.float64)
    return x.float(), grad.float()


def reference():
    x, grad = make_batch()
    x.requires_grad_(True)
    bn = nn.BatchNorm2d(4, momentum=0.3)
    with torch.no_grad():
        bn.weight.copy_(torch.linspace(0.5, 2, 4))
        bn.bias.copy_(torch.linspace(-1, 1, 4))
    y = bn(x)
    y.backward(grad)
    return dict(y=y.detach(), gx=x.grad, gw=bn.weight.grad,
                gb=bn.bias.grad, mean=bn.running_mean,
                var=bn.running_var)


def worker(rank, port, out_dir):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=WORLD)
    try:
        x, grad = make_batch()
        part = slice(0, 3) if rank == 0 else slice(3, 5)
        x = x[part].clone().requires_grad_(True)
        model = convert_to_cpu_sync_bn(
            nn.Sequential(nn.SyncBatchNorm(4, momentum=0.3)))
        bn = model[0]
        assert isinstance(bn, CPUSyncBatchNorm)
        with torch.no_grad():
            bn.weight.copy_(torch.linspace(0.5, 2, 4))
            bn.bias.copy_(torch.linspace(-1, 1, 4))
        y = bn(x)
        y.backward(grad[part])
        # parameter gradients are per-rank contributions; DDP sums
        # (averages) them, here summed explicitly
        gw, gb = bn.weight.grad.clone(), bn.bias.grad.clone()
        dist.all_reduce(gw)
        dist.all_reduce(gb)
        torch.save(dict(y=y.detach(), gx=x.grad, gw=gw, gb=gb,
                        mean=bn.running_mean, var=bn.running_var),
                   os.path.join(out_dir, f'{rank}.pt'))
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_match_full_batch_bn(tmp_path):
    # spawn, not fork: once this process has compiled a model (any earlier
    # torch.compile test), autograd refuses to run in forked children
    mp.start_processes(worker, args=(free_port(), str(tmp_path)),
                       nprocs=WORLD, start_method='spawn')
    parts = [torch.load(tmp_path / f'{r}.pt') for r in range(WORLD)]
    want = reference()
    for key in ('y', 'gx'):
        got = torch.cat([p[key] for p in parts])
        torch.testing.assert_close(got, want[key], rtol=1e-4, atol=1e-4,
                                   msg=key)
    for key in ('gw', 'gb', 'mean', 'var'):
        for p in parts:
            torch.testing.assert_close(p[key], want[key], rtol=1e-4,
                                       atol=1e-4, msg=key)


def test_single_process_is_plain_batchnorm():
    x = torch.randn(4, 3, 5, 5)
    bn, ref = CPUSyncBatchNorm(3), nn.BatchNorm2d(3)
    torch.testing.assert_close(bn(x), ref(x))
    torch.testing.assert_close(bn.running_var, ref.running_var)
    bn.eval(), ref.eval()
    torch.testing.assert_close(bn(x), ref(x))


def test_conversion_keeps_state_and_mode():
    sync = nn.SyncBatchNorm(3, eps=1e-3, momentum=None)
    sync.running_mean.fill_(2.0)
    sync.weight.requires_grad_(False)
    sync.eval()
    bn = convert_to_cpu_sync_bn(sync)
    assert isinstance(bn, CPUSyncBatchNorm) and not bn.training
    assert bn.eps == 1e-3 and bn.momentum is None
    assert torch.equal(bn.running_mean, torch.full((3, ), 2.0))
    assert not bn.weight.requires_grad and bn.bias.requires_grad


def test_rejects_1d_input():
    with pytest.raises(ValueError, match=r'\(N, C, ...\)'):
        CPUSyncBatchNorm(3)(torch.randn(3))
