"""Chamfer distance between point clouds, with NSFP's truncation.

NSFP (``loss.py: my_chamfer_fn``, built on pytorch3d ``knn_points(K=1)``) computes, for both directions,
the **squared** nearest-neighbour distance, sets every value ``>= 2`` (m^2) to **0** (the point is
treated as having no partner: an outlier or a newly visible surface), takes the **mean over all
points, zeros included**, and sums the two directions. :func:`chamfer_distance` with
``truncate=2.0`` reproduces that exactly.

SCOOP's refinement Chamfer (``tools/losses.py: chamfer_loss``) weights the forward term per point
(correspondence confidence) and the backward term by ``backward_dist_weight``: ``weights=`` and
``backward_weight=`` here.

The nearest neighbours come from :func:`motionflow.ops.neighbors.knn` (KD-tree indices, distances
recomputed in torch), so gradients flow to both clouds.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..errors import ShapeError, UnknownNameError
from .neighbors import as_points, knn

REDUCTIONS = ("mean", "sum", "none")


def _one_way(a: torch.Tensor, b: torch.Tensor, truncate, squared, backend) -> torch.Tensor:
    d, _ = knn(a, b, k=1, backend=backend, squared=squared, check_finite=False)  # checked by the caller
    d = d[:, 0]
    if truncate is not None:
        d = torch.where(d >= truncate, torch.zeros_like(d), d)
    return d


def chamfer_distance(
    a,
    b,
    truncate: Optional[float] = None,
    squared: bool = True,
    reduction: str = "mean",
    bidirectional: bool = True,
    weights=None,
    backward_weight: float = 1.0,
    backend: str = "auto",
    check_finite: bool = True,
):
    """Chamfer distance between ``a (N, 3)`` and ``b (M, 3)``.

    Args:
        a, b: point clouds (numpy or torch). Gradients flow to both.
        truncate: per-point NN distances (squared when ``squared``) that are ``>= truncate`` are set
            to 0 and still counted in the mean (NSFP: ``truncate=2.0`` with ``squared=True``).
            None: no truncation.
        squared: use squared Euclidean distances (NSFP, SCOOP) or plain distances.
        reduction: ``"mean"``: ``mean_i d(a_i, b) + backward_weight * mean_j d(b_j, a)`` (one scalar);
            ``"sum"``: the same with sums; ``"none"``: the tuple ``(d_ab (N,), d_ba (M,) or None)``
            of per-point (weighted, truncated) distances.
        bidirectional: add the ``b -> a`` term (NSFP, SCOOP with backward weight); False gives the
            one-way ``a -> b`` term only.
        weights: optional ``(N,)`` per-point weights of the ``a -> b`` term (SCOOP's confidence).
        backward_weight: factor on the ``b -> a`` term.
        backend: kNN backend (see :func:`motionflow.ops.neighbors.knn`).
        check_finite: raise on NaN/inf input (a host sync on CUDA). Optimisation loops pass False:
            a non-finite point then makes the loss NaN, which stops the optimiser
            (:func:`motionflow.sceneflow.stopping.optimize`) without a sync every iteration.

    Returns:
        A scalar tensor, or a tuple of per-point tensors for ``reduction="none"``.
    """
    if reduction not in REDUCTIONS:
        raise UnknownNameError(f"chamfer_distance reduction: expected one of {REDUCTIONS}, found {reduction!r}")
    ta = as_points(a, "a", check_finite=check_finite)
    tb = as_points(b, "b", check_finite=check_finite).to(ta.dtype)
    if ta.shape[0] == 0 or tb.shape[0] == 0:
        raise ShapeError(f"chamfer_distance: both clouds need points, found a={ta.shape[0]}, b={tb.shape[0]}")
    d_ab = _one_way(ta, tb, truncate, squared, backend)
    if weights is not None:
        w = torch.as_tensor(weights, dtype=d_ab.dtype, device=d_ab.device)
        if w.shape != d_ab.shape:
            raise ShapeError(f"chamfer_distance weights: expected shape ({ta.shape[0]},), found {tuple(w.shape)}")
        d_ab = d_ab * w
    d_ba = _one_way(tb, ta, truncate, squared, backend) if bidirectional else None
    if reduction == "none":
        return d_ab, d_ba
    red = torch.mean if reduction == "mean" else torch.sum
    loss = red(d_ab)
    if d_ba is not None:
        loss = loss + backward_weight * red(d_ba)
    return loss


class ChamferDistance(nn.Module):
    """Module twin of :func:`chamfer_distance` holding its options (e.g. ``ChamferDistance(truncate=2.0)``)."""

    def __init__(self, truncate=None, squared=True, reduction="mean", bidirectional=True, backward_weight=1.0,
                 backend="auto", check_finite=True):
        super().__init__()
        self.truncate = truncate
        self.squared = squared
        self.reduction = reduction
        self.bidirectional = bidirectional
        self.backward_weight = backward_weight
        self.backend = backend
        self.check_finite = check_finite

    def forward(self, a, b, weights=None):
        return chamfer_distance(a, b, truncate=self.truncate, squared=self.squared, reduction=self.reduction,
                                bidirectional=self.bidirectional, weights=weights,
                                backward_weight=self.backward_weight, backend=self.backend,
                                check_finite=self.check_finite)
