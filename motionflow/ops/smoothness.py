"""k-NN flow smoothness (SCOOP).

SCOOP (``tools/losses.py: smooth_loss``, ``loss_norm=1``) penalises, for every point, the mean over its
``k`` nearest neighbours (itself excluded) of the L1 norm of the flow difference, and averages over
points:

    L_smooth = 1/N sum_i 1/k sum_{j in N_k(i)} || f_i - f_j ||_1

The neighbourhood graph is built once on the (fixed) source points with a KD-tree.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..errors import ShapeError
from .neighbors import as_points, knn_indices


def knn_graph(points, k: int = 32, backend: str = "auto") -> torch.Tensor:
    """Indices ``(N, k)`` of the k nearest *other* points of every point (self excluded, like SCOOP's
    ``graph.edges[:, 1:k+1]``)."""
    p = as_points(points, "points")
    if p.shape[0] < k + 1:
        raise ShapeError(f"knn_graph: k={k} needs at least {k + 1} points, found {p.shape[0]}")
    idx = knn_indices(p, p, k=k + 1, backend=backend)
    # drop the point itself; with duplicate points the self index may not come first
    self_idx = torch.arange(p.shape[0], device=idx.device)[:, None]
    is_self = idx == self_idx
    has_self = is_self.any(1, keepdim=True)
    # rows where self was found: remove it; others (a duplicate displaced it): drop the last column
    drop = torch.where(has_self, is_self, torch.zeros_like(is_self))
    drop[:, -1] |= ~has_self[:, 0]
    return idx[~drop].reshape(p.shape[0], k)


def knn_smoothness(points, flow: torch.Tensor, k: int = 32, graph: Optional[torch.Tensor] = None,
                   norm: int = 1) -> torch.Tensor:
    """SCOOP's smoothness loss of ``flow (N, 3)`` on ``points (N, 3)``.

    Args:
        points: source cloud the neighbourhoods are taken on (ignored when ``graph`` is given).
        flow: ``(N, 3)`` flow tensor (gradients flow through it).
        k: neighbours per point (SCOOP: 32).
        graph: precomputed :func:`knn_graph` ``(N, k)`` (pass it when called every iteration).
        norm: the p of the per-neighbour norm (SCOOP: 1).

    Returns:
        scalar tensor.
    """
    if flow.ndim != 2 or flow.shape[1] != 3:
        raise ShapeError(f"knn_smoothness flow: expected shape (N, 3), found {tuple(flow.shape)}")
    if graph is None:
        graph = knn_graph(points, k)
    if graph.shape[0] != flow.shape[0]:
        raise ShapeError(f"knn_smoothness graph: expected {flow.shape[0]} rows, found {graph.shape[0]}")
    graph = graph.to(flow.device)
    diff = flow[:, None, :] - flow[graph]  # (N, k, 3)
    return diff.norm(p=norm, dim=-1).mean()
