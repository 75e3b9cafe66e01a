"""Mixed precision on the CPU: bfloat16 autocast, no loss scaling."""
import copy
from contextlib import ExitStack, contextmanager
from typing import Iterator, Optional, Sequence

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
    used by the heads (``nms``, ``RoIAlign``) accept float32 only. This is
    done with forward pre-hooks and forward hooks on those modules,
    registered for the duration of :meth:`optim_context` (the model's
    forward in ``train_step``) and removed after it.

    :class:`~mmvrwkv.engine.PortableRunner` builds this wrapper instead of
    ``AmpOptimWrapper`` (what ``--amp`` asks for) when there is no GPU; see
    :func:`cpu_amp_config`.

    Args:
        dtype (str | torch.dtype): autocast dtype, bfloat16 or float16.
            Defaults to 'bfloat16'.
        autocast_modules (Sequence[str], optional): attributes of the model
            to run under autocast (those the model has); None, or none of
            them present, autocasts the whole forward with outputs left as
            they come. Defaults to ('backbone', 'neck').
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
    def _autocast(self, module: nn.Module) -> Iterator[None]:
        """Run ``module``'s forward under autocast, with float32 outputs,
        while the context is open.

        The pre-hook is appended and the forward hook prepended, so the
        module's other hooks run outside autocast and see float32 outputs.
        """
        entered = []  # one autocast context per call in progress

        def enter(mod, args):
            context = torch.autocast('cpu', dtype=self.cast_dtype)
            context.__enter__()
            entered.append(context)

        def leave(mod, args, output):
            entered.pop().__exit__(None, None, None)
            return _to_float(output)

        handles = [module.register_forward_pre_hook(enter),
                   module.register_forward_hook(leave, prepend=True)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
            # a forward that raised skipped its forward hook
            while entered:
                entered.pop().__exit__(None, None, None)


def cpu_amp_config(optim_wrapper: dict) -> dict:
    """``AmpOptimWrapper`` config -> the equivalent ``CPUAmpOptimWrapper``.

    What ``--amp`` sets (``type='AmpOptimWrapper'``, ``loss_scale``) cannot
    run without a GPU. The returned copy has ``type='CPUAmpOptimWrapper'``,
    no ``loss_scale`` or ``use_fsdp`` (float16 loss scaling has no meaning
    for bfloat16), and ``dtype='bfloat16'`` unless bfloat16 was asked for
    already. Other keys pass through.

    Args:
        optim_wrapper (dict): an ``optim_wrapper`` config with
            ``type='AmpOptimWrapper'``.

    Returns:
        dict: a new config.
    """
    optim_wrapper = copy.deepcopy(optim_wrapper)
    optim_wrapper['type'] = 'CPUAmpOptimWrapper'
    optim_wrapper.pop('loss_scale', None)
    optim_wrapper.pop('use_fsdp', None)
    if optim_wrapper.get('dtype') in (None, 'float16', torch.float16):
        optim_wrapper['dtype'] = 'bfloat16'
    return optim_wrapper
