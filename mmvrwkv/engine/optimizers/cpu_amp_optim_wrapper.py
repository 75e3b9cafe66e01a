"""Mixed precision on the CPU: bfloat16 autocast, no loss scaling."""
from contextlib import ExitStack, contextmanager
from typing import Optional, Sequence

import torch
import torch.nn as nn
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from mmengine.utils import apply_to


def _to_float(out):
    return apply_to(out, lambda x: isinstance(x, torch.Tensor) and
                    x.is_floating_point() and x.dtype != torch.float32,
                    lambda x: x.float())


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """The CPU counterpart of mmengine's ``AmpOptimWrapper``.

    mmengine's AMP wrapper needs a GPU (its GradScaler is for float16).
    On the CPU, autocast runs matrix products and convolutions in bfloat16,
    which has float32's exponent range, so gradients cannot underflow the
    way float16 ones do and no loss scaling is needed. Parameters, optimizer
    state and the loss stay float32.

    Only the feature extractor (``autocast_modules``, by default the
    model's backbone and neck, where nearly all the FLOPs are) runs under
    autocast, and its outputs are cast back to float32: mmcv's CPU kernels
    used by the heads (``nms``, ``RoIAlign``) accept float32 only.

    :class:`~mmvrwkv.engine.PortableRunner` builds this wrapper instead of
    ``AmpOptimWrapper`` (what ``--amp`` asks for) when there is no GPU.

    Args:
        dtype (str | torch.dtype): autocast dtype. Defaults to 'bfloat16'.
        autocast_modules (Sequence[str], optional): attributes of the model
            to run under autocast (those the model has); None autocasts the
            whole forward. Defaults to ('backbone', 'neck').
        **kwargs: the arguments of :class:`OptimWrapper`.
    """

    def __init__(self, dtype='bfloat16',
                 autocast_modules: Optional[Sequence[str]] = ('backbone',
                                                              'neck'),
                 **kwargs):
        super().__init__(**kwargs)
        self.autocast_modules = autocast_modules
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
        with super().optim_context(model), ExitStack() as stack:
            core = model.module if is_model_wrapper(model) else model
            parts = [getattr(core, name) for name in self.autocast_modules
                     or () if isinstance(getattr(core, name, None),
                                         nn.Module)]
            if not parts:
                stack.enter_context(
                    torch.autocast('cpu', dtype=self.cast_dtype))
            for part in parts:
                stack.enter_context(self._autocast(part))
            yield

    @contextmanager
    def _autocast(self, module: nn.Module):
        """Run ``module``'s forward under autocast, float32 outputs."""
        forward = module.forward

        def cast_forward(*args, **kwargs):
            with torch.autocast('cpu', dtype=self.cast_dtype):
                return _to_float(forward(*args, **kwargs))

        module.forward = cast_forward
        try:
            yield
        finally:
            del module.forward
