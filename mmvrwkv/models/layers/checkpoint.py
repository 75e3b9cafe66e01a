"""Activation checkpointing (``with_cp``) for the layers and the adapter."""
from typing import Callable

import torch
import torch.utils.checkpoint as cp


def maybe_checkpoint(enabled: bool, function: Callable, x: torch.Tensor,
                     *args):
    """``function(x, *args)``, recomputed in the backward pass instead of
    storing its activations when ``enabled`` and ``x`` needs a gradient.

    Without a gradient to x (inference, frozen inputs) there is nothing to
    save memory on, so it runs plainly. Non-reentrant checkpointing: it
    works with inputs that need no gradient, keyword-free ``args`` of any
    type, ``torch.compile`` and DDP.

    Args:
        enabled (bool): the module's ``with_cp``.
        function (callable): the computation, called as
            ``function(x, *args)``.
        x (Tensor): its first input, the one whose ``requires_grad``
            decides.
        *args: the other inputs.
    """
    if enabled and x.requires_grad:
        return cp.checkpoint(function, x, *args, use_reentrant=False)
    return function(x, *args)
