"""Entropic optimal transport by Sinkhorn iterations, in the log domain (SCOOP / FLOT form).

SCOOP (``tools/ot.py``) and FLOT use uniform marginals ``p = 1/N``, ``q = 1/M``, a kernel
``K = exp(-C / eps)`` restricted to a support mask (pairs closer than 10 m), and the *unbalanced*
(KL-relaxed) scaling updates with exponent ``power = gamma / (gamma + eps)``:

    b <- (q / K^T a) ** power,    a <- (p / K b) ** power,    T = diag(a) K diag(b)

(``power = 1`` is the balanced case). Two implementations:

* :func:`sinkhorn`: the same updates on ``log a``, ``log b`` with ``logsumexp`` so that small ``eps``
  does not underflow. Deviation: SCOOP adds ``1e-8`` to the denominators; the log-domain form needs no
  such constant (a row whose support is empty gets zero mass).
* :func:`sinkhorn_scaling`: the official multiplicative form of SCOOP / FLOT ``tools/ot.py`` with the
  ``+ 1e-8`` in both denominators, ``b`` updated first, learned ``eps`` / ``gamma`` as tensors (gradients
  reach them). The learned networks use this one: their published numbers depend on the ``1e-8`` terms
  (at ``eps = 0.03`` they move the initial flow by up to 7e-4 m).
"""

from __future__ import annotations

from typing import Optional

import torch

from ..errors import ShapeError


def sinkhorn(cost: torch.Tensor, eps: float, iters: int, unbalanced: Optional[float] = None,
             support: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Transport plan ``(..., N, M)`` for ``cost (..., N, M)``.

    Args:
        cost: transport cost (SCOOP: ``1 - cosine similarity`` of point features).
        eps: entropic regularisation (> 0).
        iters: Sinkhorn iterations (SCOOP default: 1). ``0`` returns the masked kernel ``K`` itself,
            like SCOOP.
        unbalanced: mass regularisation ``gamma`` (KL marginal relaxation); None = balanced.
        support: optional bool ``(..., N, M)`` mask of allowed pairs (SCOOP: distance < 10 m).

    Returns:
        the plan ``T`` (same shape as ``cost``); with ``unbalanced=None`` and enough iterations its
        rows sum to ``1/N`` and its columns to ``1/M``.
    """
    if cost.ndim < 2:
        raise ShapeError(f"sinkhorn cost: expected shape (..., N, M), found {tuple(cost.shape)}")
    if not eps > 0:
        raise ShapeError(f"sinkhorn eps: expected > 0, found {eps}")
    if iters < 0:
        raise ShapeError(f"sinkhorn iters: expected >= 0, found {iters}")
    log_k = -cost / eps
    if support is not None:
        if support.shape != cost.shape:
            raise ShapeError(f"sinkhorn support: expected shape {tuple(cost.shape)}, found {tuple(support.shape)}")
        log_k = log_k.masked_fill(~support.bool(), float("-inf"))
    if iters == 0:
        return log_k.exp()
    n, m = cost.shape[-2], cost.shape[-1]
    log_p = -torch.log(torch.tensor(float(n), dtype=cost.dtype, device=cost.device))
    log_q = -torch.log(torch.tensor(float(m), dtype=cost.dtype, device=cost.device))
    power = 1.0 if unbalanced is None else float(unbalanced) / (float(unbalanced) + float(eps))
    log_a = torch.full(cost.shape[:-1], float(log_p), dtype=cost.dtype, device=cost.device)
    log_b = torch.zeros(cost.shape[:-2] + (m,), dtype=cost.dtype, device=cost.device)

    def _safe(x):  # rows/columns with empty support: logsumexp = -inf -> give them zero mass
        return torch.where(torch.isfinite(x), x, torch.full_like(x, float("inf")))

    for _ in range(iters):
        lse_b = torch.logsumexp(log_k + log_a[..., :, None], dim=-2)  # log K^T a, (..., M)
        log_b = power * (log_q - _safe(lse_b))
        lse_a = torch.logsumexp(log_k + log_b[..., None, :], dim=-1)  # log K b, (..., N)
        log_a = power * (log_p - _safe(lse_a))
    return (log_a[..., :, None] + log_k + log_b[..., None, :]).exp()


def sinkhorn_scaling(cost: torch.Tensor, eps, gamma, iters: int, support: Optional[torch.Tensor] = None,
                     stabiliser: float = 1e-8) -> torch.Tensor:
    """The multiplicative unbalanced Sinkhorn of SCOOP / FLOT (``tools/ot.py: sinkhorn``), batched.

    ``K = exp(-cost / eps) * support``; ``a = p = 1/N``, ``q = 1/M``, ``power = gamma / (gamma + eps)``;
    ``iters`` times: ``b = (q / (K^T a + 1e-8)) ** power``, then ``a = (p / (K b + 1e-8)) ** power``;
    plan ``T = a K b^T``.

    Args:
        cost: ``(B, N, M)`` transport cost (``1 - cosine similarity``).
        eps, gamma: entropic and mass regularisation, floats or tensors of one element (learned:
            ``exp(eps_hat) + 0.03`` and ``exp(gamma_hat)``; gradients flow through them).
        iters: unrolled iterations (SCOOP / FLOT: 1). ``0`` returns the masked kernel ``K`` (FLOT_0).
        support: optional bool / 0-1 ``(B, N, M)`` mask of allowed pairs (pairs closer than 10 m).
        stabiliser: the constant added to both denominators (official: 1e-8).

    Returns:
        the plan ``(B, N, M)``.
    """
    if cost.ndim != 3:
        raise ShapeError(f"sinkhorn_scaling cost: expected shape (B, N, M), found {tuple(cost.shape)}")
    if iters < 0:
        raise ShapeError(f"sinkhorn_scaling iters: expected >= 0, found {iters}")
    kernel = torch.exp(-cost / eps)
    if support is not None:
        if support.shape != cost.shape:
            raise ShapeError(f"sinkhorn_scaling support: expected shape {tuple(cost.shape)}, found {tuple(support.shape)}")
        kernel = kernel * support.to(cost.dtype)
    if iters == 0:
        return kernel
    power = gamma / (gamma + eps)
    b_, n, m = cost.shape
    p = torch.ones((b_, n, 1), dtype=cost.dtype, device=cost.device) / n
    q = torch.ones((b_, m, 1), dtype=cost.dtype, device=cost.device) / m
    a = p
    for _ in range(iters):
        b = torch.pow(q / (torch.bmm(kernel.transpose(1, 2), a) + stabiliser), power)
        a = torch.pow(p / (torch.bmm(kernel, b) + stabiliser), power)
    return a * kernel * b.transpose(1, 2)
