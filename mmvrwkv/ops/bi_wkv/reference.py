"""Plain PyTorch Bi-WKV: the readable definition, test oracle and fallback."""
import torch

from ..common.library import accumulation_dtype

EPS = 1e-6


def bi_wkv_reference(w: torch.Tensor,
                     u: torch.Tensor,
                     k: torch.Tensor,
                     v: torch.Tensor,
                     max_elements: int = 1 << 24) -> torch.Tensor:
    """Bi-WKV by direct summation over all token pairs, O(T^2 C) per sample.

    ``y[b, t] = sum_i e^{x[t, i] + k[b, i]} v[b, i]
    / sum_i e^{x[t, i] + k[b, i]}``
    with ``x[t, i] = -(|t - i| - 1) * w`` for ``i != t`` and ``x[t, t] = u``,
    computed per channel, normalised by the maximum exponent, with 1e-6 added
    to the normalised denominator as the official kernels do.

    Args:
        w (Tensor): decay, shape (C,).
        u (Tensor): bonus of the current token, shape (C,).
        k (Tensor): keys, shape (B, T, C).
        v (Tensor): values, shape (B, T, C).
        max_elements (int): bound on the size of the (B, rows, T, C) block
            evaluated at once. Defaults to 2**24.

    Returns:
        Tensor: shape (B, T, C), dtype of ``k``. Computed in float32 (float64
        for float64 input) and differentiable by autograd.
    """
    B, T, C = k.shape
    acc = accumulation_dtype(k.dtype)
    w, u, k_, v_ = (x.to(acc) for x in (w, u, k, v))
    t = torch.arange(T, device=k.device)
    dist = (t[:, None] - t[None, :]).abs().to(acc) - 1
    rows = max(1, max_elements // max(1, B * T * C))
    out = []
    for start in range(0, T, rows):
        d = dist[start:start + rows, :, None]  # (r, T, 1)
        x = torch.where(d < 0, u, -d * w)  # (r, T, C)
        e = x[None] + k_[:, None]  # (B, r, T, C)
        # The max is a constant of normalisation, not a function to
        # differentiate (the compiled kernels treat it the same way).
        m = e.amax(dim=2, keepdim=True).detach()
        p = (e - m).exp()
        out.append((p * v_[:, None]).sum(2) / (p.sum(2) + EPS))
    return torch.cat(out, dim=1).to(k.dtype)
