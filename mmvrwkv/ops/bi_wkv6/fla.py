"""Bi-WKV6 with flash-linear-attention's RWKV-6 kernels (the ``'fla'``
backend; optional: ``pip install -e .[fla]``, which installs ``fla-core``;
written against fla-core 0.6.0 and Triton 3.8).

fla computes the causal RWKV-6 recurrence per head,
``o_t = r_t (diag(u) k_t v_t^T + S_{t-1})``,
``S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T``, with ``g`` the log-decay. That
is Bi-WKV6's forward half with ``g = -exp(w)`` and ``scale = 1`` (fla's
default is ``K ** -0.5``). The reverse half, ``r_t sum_{s > t} P(t, s) k_s
v_s^T``, is the same recurrence on the tokens in reverse order with
``u = 0`` (the current token then adds nothing). Both halves run as one
call: the reversed tokens are stacked beside the forward ones as H more
heads (bonus u for the first H, 0 for the others), which also doubles the
blocks of a launch. fla's own ``reverse=True`` is not used: in fla 0.6.0
``fused_recurrent_rwkv6``'s gradient of the log-decay is wrong with it
(relative error 1.1 against autograd of fla's naive recurrence, in
Triton's interpreter, where every other result agrees to 3e-7), while the
flipped inputs need only the forward kernel.

Kernels: ``chunk_rwkv6`` (chunked, tensor cores) by default, and
``fused_recurrent_rwkv6`` (one step per token) for short sequences, where
fla's own layers switch to it (T <= 64), and in the interpreter.
Everything is computed in float32 whatever the input dtype (fla writes
its output in v's dtype, and y is float32 for every input dtype, as the
other backends return it; float64 inputs are computed in float32 too, and
y cast to float64); gradients come back in each input's dtype.
``chunk_rwkv6``'s products run on tensor cores (TF32 on Ampere and
later), so it is less precise than ``fused_recurrent_rwkv6``, whose
gradient of ``w`` in turn loses precision as T grows (a difference of sums
over the later tokens: about 1e-6 sqrt(T) relative in float32). Measured
errors and limits: ``docs/fla_backend.md``.

Decays: the log-decay is clamped at ``LOG_DECAY_MIN`` (-30), i.e. ``w`` at
``log(30)``: raising a decay below ``exp(-30)`` (1e-13) to it changes no
float32 result. Without the clamp, ``-exp(w)`` overflows to -inf for
w > 88.7 (a NaN gradient), and the gradient of a large ``w``,
``dL/dg * g``, multiplies by ``|g|`` the rounding noise of fla's ``dL/dg``
(a difference of cumulative sums, where the exact value is a product
with the vanishing decay): relative errors of gw up to 1 on the extreme
inputs of the tests. The first and the last token's decays never enter
Bi-WKV6 (they act on an empty state, or after the last read): they are
passed as 0, so their gradient is exactly 0, as in the reference.

Device: CUDA. With Triton's interpreter (``TRITON_INTERPRET=1`` set before
Triton is imported, and fla's autotuners limited to one configuration,
since the interpreter cannot time them), CPU tensors run too; only
``fused_recurrent_rwkv6`` runs there (``chunk_rwkv6`` fails in the
interpreter in fla 0.6.0: ``i_t.to`` on a Python int in
``fla/ops/common/chunk_h.py``). That is how every CI run tests this
backend (``tests/test_ops/test_bi_wkv6/test_fla.py``); ``chunk_rwkv6`` is
tested on a GPU only.
"""
import importlib
import importlib.util
import math
import os
from typing import Dict, Optional

import torch

from ..common.library import accumulation_dtype
from .reference import bi_wkv6_reference

# fla's layers run the recurrent kernel up to this many tokens
RECURRENT_MAX_T = 64
MODES = ('chunk', 'fused_recurrent')
# the smallest log-decay passed to fla (see the module docstring)
LOG_DECAY_MIN = -30.0
INSTALL_HINT = '`pip install -e .[fla]` (or `pip install fla-core`)'
_kernels = {}


def interpreting() -> bool:
    """Whether Triton runs kernels in its interpreter (on CPU tensors)."""
    return os.environ.get('TRITON_INTERPRET', '0') == '1'


def fla_unsupported(device: torch.device,
                    dtype: Optional[torch.dtype] = None) -> Optional[str]:
    """None where the 'fla' backend runs, else why not and the fix."""
    if importlib.util.find_spec('fla') is None:
        return f'flash-linear-attention is not installed: {INSTALL_HINT}'
    if device.type == 'cuda' or (device.type == 'cpu' and interpreting()):
        return None
    return (f'fla runs on CUDA tensors, got {device.type} (CPU tensors '
            'only in Triton\'s interpreter, TRITON_INTERPRET=1); use '
            "backend 'compiled' or 'chunked' there")


def _kernel(mode: str):
    if mode not in _kernels:
        try:
            module = importlib.import_module('fla.ops.rwkv6')
        except ImportError as error:
            raise RuntimeError(
                f'bi_wkv6: fla backend requested but fla.ops.rwkv6 does not '
                f'import ({error}); install a working flash-linear-attention '
                f'with its Triton: {INSTALL_HINT}') from error
        _kernels.update(chunk=module.chunk_rwkv6,
                        fused_recurrent=module.fused_recurrent_rwkv6)
    return _kernels[mode]


def choose_mode(T: int, device='cuda') -> str:
    """fla's kernel for T tokens on ``device``: the recurrent one for short
    sequences (T <= 64, as fla's layers) and on CPU tensors (Triton's
    interpreter, where the chunked one does not run in fla 0.6.0)."""
    if T <= RECURRENT_MAX_T or torch.device(device).type == 'cpu':
        return 'fused_recurrent'
    return 'chunk'


def _log_decay(w: torch.Tensor) -> torch.Tensor:
    """``-exp(w)`` in float32, at least LOG_DECAY_MIN, and 0 at the first
    and the last token (whose decays Bi-WKV6 never uses); (B, T, H, N)."""
    # clamp w, not -exp(w): exp(w) = inf would make its gradient 0 * inf
    g = -torch.exp(w.float().clamp(max=math.log(-LOG_DECAY_MIN)))
    T = w.shape[1]
    inner = torch.arange(T, device=w.device)
    inner = ((inner > 0) & (inner < T - 1)).view(1, T, 1, 1)
    return torch.where(inner, g, torch.zeros((), device=w.device))


def _both_ways(x: torch.Tensor) -> torch.Tensor:
    """(B, T, H, N) -> (B, T, 2H, N) float32: the tokens forward (heads
    :H), then reversed (heads H:)."""
    return torch.cat([x, x.flip(1)], dim=2).float()


def bi_wkv6_fla(r: torch.Tensor,
                k: torch.Tensor,
                v: torch.Tensor,
                w: torch.Tensor,
                u: torch.Tensor,
                mode: Optional[str] = None) -> torch.Tensor:
    """Bi-WKV6 (:func:`mmvrwkv.ops.bi_wkv6`'s arguments) with fla's kernels.

    Args:
        r, k, v, w (Tensor): (B, T, C), C = H * N; any floating dtype
            (computed in float32).
        u (Tensor): (H, N).
        mode (str, optional): 'chunk' or 'fused_recurrent'; None chooses
            by T and device (:func:`choose_mode`). Defaults to None.

    Returns:
        Tensor: y (B, T, C), float32 (float64 for float64 ``r``).

    Example:
        >>> r, k, v, w = torch.randn(4, 2, 196, 128, device='cuda').unbind()
        >>> bi_wkv6_fla(r, k, v, w, torch.randn(2, 64, device='cuda')).shape
        torch.Size([2, 196, 128])
    """
    why = fla_unsupported(r.device, r.dtype)
    if why is not None:
        raise RuntimeError(f'bi_wkv6: fla backend requested but {why}')
    mode = choose_mode(r.shape[1], r.device) if mode is None else mode
    if mode not in MODES:
        raise ValueError(f'bi_wkv6 (fla): mode {mode!r} is not one of: '
                         + ', '.join(MODES))
    kernel = _kernel(mode)
    B, T, C = r.shape
    H, N = u.shape
    out_dtype = accumulation_dtype(r.dtype)
    # float32 for every kernel input: fla writes o in v's dtype (y must
    # be float32) and the chunked kernel's products take the inputs' dtype
    r, k, v = (_both_ways(x.reshape(B, T, H, N)) for x in (r, k, v))
    g = _both_ways(_log_decay(w.reshape(B, T, H, N)))
    u = u.float()
    bonus = torch.cat([u, torch.zeros_like(u)])
    o, _ = kernel(r, k, v, g, bonus, scale=1.0)
    y = o[:, :, :H] + o[:, :, H:].flip(1)
    return y.reshape(B, T, C).to(out_dtype)


def errors_against_reference(r: torch.Tensor,
                             k: torch.Tensor,
                             v: torch.Tensor,
                             w: torch.Tensor,
                             u: torch.Tensor,
                             gy: torch.Tensor,
                             mode: Optional[str] = None,
                             floor: float = 1e-3) -> Dict[str, float]:
    """How far this backend is from the float64 reference on the given
    inputs (any device the backend runs on): for y and each gradient of
    ``<y, gy>`` (gr, gk, gv, gw, gu), the largest absolute error divided
    by the largest expected magnitude (at least ``floor``); NaN or Inf in a
    result gives inf. For GPU checks of both modes, and the tests.

    Returns:
        dict: name -> relative error, ``'<name> dtype'`` -> the dtype of
        the result (str), and ``'gw edge'``: the largest ``|gw|`` at the
        first and the last token (0 in the reference: their decays are
        never used).
    """
    inputs = (r, k, v, w, u)
    xs = [x.detach().requires_grad_() for x in inputs]
    y = bi_wkv6_fla(*xs, mode=mode)
    got = [y] + list(torch.autograd.grad(y, xs, gy.to(y)))
    xs = [x.detach().cpu().double().requires_grad_() for x in inputs]
    want_y = bi_wkv6_reference(*xs, chunk_size=32)
    want = [want_y] + list(torch.autograd.grad(
        want_y, xs, gy.detach().cpu().double()))
    errors = {'gw edge': got[4][:, [0, -1]].abs().max().item()}
    for name, a, b in zip(('y', 'gr', 'gk', 'gv', 'gw', 'gu'), got, want):
        errors[f'{name} dtype'] = str(a.dtype)
        a = a.detach().cpu().double()
        if not torch.isfinite(a).all():
            errors[name] = math.inf
            continue
        scale = max(b.abs().max().item(), floor)
        errors[name] = (a - b).abs().max().item() / scale
    return errors
