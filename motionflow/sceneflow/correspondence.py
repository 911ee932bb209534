"""Soft correspondences from an optimal-transport plan on point features (FLOT, SCOOP).

Both papers match the two clouds by transporting feature mass (``tools/ot.py: sinkhorn``):

* cosine cost ``C = 1 - S``, ``S = f1 f2^T`` with ``f / sqrt(|f|^2 + 1e-8)``;
* support: pairs closer than ``max_distance`` (10 m; squared distances in the expanded form
  ``|x|^2 + |y|^2 - 2 x.y``, as the official code);
* the plan ``T`` of the unbalanced Sinkhorn (:func:`motionflow.ops.transport.sinkhorn_scaling`: official
  multiplicative form with the ``+1e-8`` terms, or :func:`~motionflow.ops.transport.sinkhorn` in the log
  domain when ``log_domain=True``, used by the training-free FPFH mode of ``scoop``).

Then the target of a source point:

* **SCOOP** (``models/scoop.py: get_recon_flow``, ``top_k=64``): the ``top_k`` largest plan entries of its
  row, raw (no softmax), weights ``w / (sum w + 1e-8)``; target ``sum w y``; confidence ``max(0, sum w S)``
  with the unmasked similarity of the same targets (``linear_confidence``: ``(sum w S + 1) / 2``). A point
  with no target in the support gets the target 0 (flow ``-x``) and confidence 0, as the official code.
* **FLOT** (``models/scene_flow.py``, ``top_k=None``): the barycentre of the whole row,
  ``(T y) / (sum_j T_ij + 1e-8)``; no confidence.

The initial flow is ``target - x``. In the log-domain mode a point without support keeps a zero flow and
zero confidence instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..errors import ShapeError
from ..ops.transport import sinkhorn, sinkhorn_scaling


@dataclass
class Correspondences:
    """What :func:`soft_correspondences` returns (batched, ``B`` clouds of ``N`` source points).

    Attributes:
        flow: ``(B, N, 3)`` initial flow ``target - x``.
        target: ``(B, N, 3)`` soft target.
        confidence: ``(B, N)`` (SCOOP) or None (FLOT).
        plan: ``(B, N, M)`` the transport plan.
        similarity: ``(B, N, M)`` the cosine similarity ``S``.
        topk_index, topk_plan, topk_weight, topk_similarity: ``(B, N, k)`` SCOOP's targets, their raw plan
            values, normalised weights and similarities (None for FLOT).
    """

    flow: torch.Tensor
    target: torch.Tensor
    confidence: Optional[torch.Tensor]
    plan: torch.Tensor
    similarity: torch.Tensor
    topk_index: Optional[torch.Tensor] = None
    topk_plan: Optional[torch.Tensor] = None
    topk_weight: Optional[torch.Tensor] = None
    topk_similarity: Optional[torch.Tensor] = None


def squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(B, N, M)`` squared distances in the official expanded form ``|x|^2 + |y|^2 - 2 x.y``."""
    d = (x ** 2).sum(-1, keepdim=True) + (y ** 2).sum(-1, keepdim=True).transpose(1, 2)
    return d - 2 * torch.bmm(x, y.transpose(1, 2))


def cosine_similarity(f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
    """``(B, N, M)`` cosine similarity with the official ``f / sqrt(|f|^2 + 1e-8)``."""
    f1 = f1 / torch.sqrt((f1 ** 2).sum(-1, keepdim=True) + 1e-8)
    f2 = f2 / torch.sqrt((f2 ** 2).sum(-1, keepdim=True) + 1e-8)
    return torch.bmm(f1, f2.transpose(1, 2))


def _check(pc1, pc2, f1, f2):
    if pc1.ndim != 3 or pc2.ndim != 3 or pc1.shape[-1] != 3 or pc2.shape[-1] != 3:
        raise ShapeError(f"soft_correspondences: expected clouds (B, N, 3) and (B, M, 3), "
                         f"found {tuple(pc1.shape)} and {tuple(pc2.shape)}")
    if f1.shape[:2] != pc1.shape[:2] or f2.shape[:2] != pc2.shape[:2] or f1.shape[-1] != f2.shape[-1]:
        raise ShapeError(f"soft_correspondences: features {tuple(f1.shape)} / {tuple(f2.shape)} do not match "
                         f"the clouds {tuple(pc1.shape)} / {tuple(pc2.shape)}")


def soft_correspondences(pc1: torch.Tensor, pc2: torch.Tensor, feat1: torch.Tensor, feat2: torch.Tensor,
                         eps, gamma, iters: int = 1, top_k: Optional[int] = 64, max_distance: float = 10.0,
                         linear_confidence: bool = False, log_domain: bool = False) -> Correspondences:
    """Transport-plan correspondences of ``pc1 (B, N, 3)`` in ``pc2 (B, M, 3)`` (see the module docstring).

    Args:
        feat1, feat2: ``(B, N, C)`` / ``(B, M, C)`` point features.
        eps, gamma: entropic / mass regularisation (floats or one-element tensors; gradients flow).
        iters: Sinkhorn iterations (1).
        top_k: SCOOP's ``nb_neigh_cross_recon`` (64; ``min(top_k, M)`` targets); None: FLOT's full barycentre.
        max_distance: transport support radius in metres (10).
        linear_confidence: SCOOP's ``linear_corr_conf`` option.
        log_domain: log-domain Sinkhorn without the ``1e-8`` terms (training-free FPFH mode).
    """
    _check(pc1, pc2, feat1, feat2)
    support = squared_distances(pc1, pc2) < max_distance ** 2
    sim = cosine_similarity(feat1, feat2)
    if log_domain:
        plan = sinkhorn(1.0 - sim, float(eps), iters, unbalanced=None if gamma is None else float(gamma), support=support)
    else:
        plan = sinkhorn_scaling(1.0 - sim, eps, gamma, iters, support=support)
    if top_k is None:
        target = torch.bmm(plan, pc2) / (plan.sum(-1, keepdim=True) + 1e-8)
        return Correspondences(target - pc1, target, None, plan, sim)
    raw, idx = torch.topk(plan, min(int(top_k), pc2.shape[1]), dim=2)
    norm = raw.sum(-1, keepdim=True)
    weight = raw / (norm + 1e-8)
    chosen = torch.gather(pc2, 1, idx.reshape(idx.shape[0], -1, 1).expand(-1, -1, 3)).reshape(*idx.shape, 3)
    target = (weight[..., None] * chosen).sum(2)
    topk_sim = torch.gather(sim, 2, idx)
    score = (topk_sim * weight).sum(-1)
    confidence = (score + 1) / 2 if linear_confidence else torch.clamp_min(score, 0.0)
    flow = target - pc1
    if log_domain:  # no support: zero flow, zero confidence (the official form would give -x)
        empty = norm[..., 0] <= 0
        flow = torch.where(empty[..., None], torch.zeros_like(flow), flow)
        confidence = torch.where(empty, torch.zeros_like(confidence), confidence)
    return Correspondences(flow, target, confidence, plan, sim, idx, raw, weight, topk_sim)
