"""How an operator's entry point picks the backend that computes it, the
same rule for every operator in :mod:`mmvrwkv.ops`.

An operator lists its backends (:class:`Backend`: a function, where it runs,
whether ONNX export can trace it) in one :class:`Dispatcher`; its entry
point checks the inputs and calls ``dispatcher.select(backend, device,
dtype)``. A backend named by the caller runs or raises an error that says
why it cannot and what to do; ``'auto'`` takes the first preferred backend
that runs on the inputs, else the standard-operator fallback with a warning
(once per process and operator); during ONNX export it takes the
exportable standard-operator form.
"""
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch

try:  # the flag torch.onnx.export(dynamo=True) sets for its whole run
    from torch.onnx._internal.exporter import _flags as _onnx_flags
except ImportError:  # another torch: torch.onnx.is_in_onnx_export() alone
    _onnx_flags = None

# unsupported(device, dtype) -> None where the backend runs, else why not
Check = Callable[[torch.device, torch.dtype], Optional[str]]


def runs_anywhere(device: torch.device, dtype: torch.dtype) -> None:
    """The check of a backend built from standard PyTorch operators."""
    return None


@dataclass(frozen=True)
class Backend:
    """One way to compute an operator.

    Attributes:
        run (callable): the implementation; takes the entry point's
            tensor arguments.
        unsupported (callable): ``unsupported(device, dtype)``: None where
            ``run`` works, else a sentence saying why not (and the fix).
        exportable (bool): whether ``torch.onnx.export`` can translate it
            (standard operators only).
    """
    run: Callable
    unsupported: Check = runs_anywhere
    exportable: bool = True


def in_onnx_export() -> bool:
    """Whether ``torch.onnx.export`` is tracing the model.

    ``torch.onnx.is_in_onnx_export()`` says so in eager and non-strict
    tracing, but TorchDynamo folds it to False, and the dynamo exporter
    retries a failed capture with Dynamo; the exporter's own flag, a module
    global, is read as it is (and guarded on) there too."""
    return torch.onnx.is_in_onnx_export() or bool(
        getattr(_onnx_flags, '_is_onnx_exporting', False))


class Dispatcher:
    """The backends of one operator and the rule of its ``backend``
    argument.

    Args:
        op (str): the operator's name, for messages.
        backends (dict): name -> :class:`Backend`, in the order
            :meth:`available` lists them.
        preferred (Sequence[str]): what ``'auto'`` tries, in order.
        fallback (str): what ``'auto'`` runs when none of ``preferred``
            can (with a warning), and during ONNX export.
        argument (str): the model argument that chooses the backend,
            named in messages (e.g. ``wkv_backend``).
        warn_fallback (bool): warn (once) when ``'auto'`` falls back.
            Defaults to True.
    """

    def __init__(self, op: str, backends: Dict[str, Backend],
                 preferred: Sequence[str], fallback: str, argument: str,
                 warn_fallback: bool = True):
        unknown = [n for n in (*preferred, fallback) if n not in backends]
        if unknown or not backends[fallback].exportable:
            raise ValueError(f'{op}: bad dispatcher setup ({unknown})')
        self.op = op
        self.backends = dict(backends)
        self.preferred = tuple(preferred)
        self.fallback = fallback
        self.argument = argument
        self.warned = not warn_fallback

    @property
    def names(self) -> Tuple[str, ...]:
        """Every value the ``backend`` argument takes."""
        return ('auto', ) + tuple(self.backends)

    def check_name(self, backend: str) -> None:
        """Raise a ValueError unless ``backend`` is one of :attr:`names`
        (models check their argument when built)."""
        if backend not in self.names:
            raise ValueError(f'{self.op}: backend {backend!r} is not one '
                             'of: ' + ', '.join(self.names))

    def select(self, backend: str, device: torch.device,
               dtype: torch.dtype) -> Callable:
        """The function that computes the operator on tensors of
        ``device`` and ``dtype`` with ``backend``.

        Raises:
            ValueError: ``backend`` is not a backend of the operator.
            RuntimeError: the named backend cannot run here, or cannot be
                exported while ONNX export traces it.
        """
        self.check_name(backend)
        if in_onnx_export():
            return self._for_export(backend)
        if backend != 'auto':
            chosen = self.backends[backend]
            why = chosen.unsupported(device, dtype)
            if why is not None:
                raise RuntimeError(f'{self.op}: {backend} backend requested '
                                   f'but {why}')
            return chosen.run
        why = None
        for name in self.preferred:
            why = self.backends[name].unsupported(device, dtype)
            if why is None:
                return self.backends[name].run
        if not self.warned:
            self.warned = True
            warnings.warn(
                f'{self.op}: {why}; falling back to the {self.fallback!r} '
                'backend (standard PyTorch operators), which is slower. Set '
                f'{self.argument}={self.fallback!r} to choose it and silence '
                'this warning.',
                RuntimeWarning,
                stacklevel=3)
        return self.backends[self.fallback].run

    def _for_export(self, backend: str) -> Callable:
        name = self.fallback if backend == 'auto' else backend
        if not self.backends[name].exportable:
            raise RuntimeError(
                f'{self.op}: the {name!r} backend is a compiled kernel, '
                'which torch.onnx.export cannot translate: build the model '
                f'with {self.argument}={self.fallback!r} (standard '
                "operators), or leave it 'auto', which exports that form")
        return self.backends[name].run

    def available(self, device='cpu',
                  dtype: torch.dtype = torch.float32) -> Tuple[str, ...]:
        """The backends that run on ``device`` for ``dtype`` here."""
        device = torch.device(device)
        return tuple(name for name, b in self.backends.items()
                     if b.unsupported(device, dtype) is None)
