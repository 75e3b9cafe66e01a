"""Mixed precision on the CPU: bfloat16 autocast, no loss scaling."""
from contextlib import contextmanager

import torch
import torch.nn as nn
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """The CPU counterpart of mmengine's ``AmpOptimWrapper``.

    mmengine's AMP wrapper needs a GPU (its GradScaler is for float16).
    On the CPU, autocast runs matrix products and convolutions in bfloat16,
    which has float32's exponent range, so gradients cannot underflow the
    way float16 ones do and no loss scaling is needed. Parameters, optimizer
    state and the loss stay float32.

    :class:`~mmvrwkv.engine.PortableRunner` builds this wrapper instead of
    ``AmpOptimWrapper`` (what ``--amp`` asks for) when there is no GPU.

    Args:
        dtype (str | torch.dtype): autocast dtype. Defaults to 'bfloat16'.
        **kwargs: the arguments of :class:`OptimWrapper`.
    """

    def __init__(self, dtype='bfloat16', **kwargs):
        super().__init__(**kwargs)
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype, None)
        if dtype not in (torch.bfloat16, torch.float16):
            raise ValueError('CPUAmpOptimWrapper: dtype must be bfloat16 or '
                             f'float16, got {dtype}')
        self.cast_dtype = dtype

    def load_state_dict(self, state_dict: dict):
        # a checkpoint of a GPU --amp run carries its GradScaler state,
        # which has no meaning without loss scaling
        state_dict = dict(state_dict)
        state_dict.pop('loss_scaler', None)
        super().load_state_dict(state_dict)

    @contextmanager
    def optim_context(self, model: nn.Module):
        with super().optim_context(model), torch.autocast(
                'cpu', dtype=self.cast_dtype):
            yield
