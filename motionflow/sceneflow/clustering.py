"""Euclidean density clustering of lidar points (the segmentation step of ICP-Flow).

ICP-Flow (Lin & Caesar, CVPR 2024, ``yanconglin/ICP-Flow``: ``utils_cluster.py``) clusters the
non-ground points of the two ego-compensated sweeps **jointly** (one cloud made of both), so that a
static object gets one label across the sweeps, and keeps the ``num_clusters`` (200) largest clusters;
everything else is "unclustered" (-1). Its Argoverse 2 run uses HDBSCAN (``min_cluster_size=20``);
its other option is open3d DBSCAN (``eps = 0.25 m``, ``min_points = min_cluster_size``).

Two methods (``method``), measured inside ``rigid`` (README "Scene flow"):

* ``dbscan`` (default): open3d's ``cluster_dbscan`` (a maintained, multi-threaded C++ DBSCAN), 0.2 s of
  CPU on the 0.1 m voxel centroids of the Argoverse 2 sample's 161k joint non-ground points;
* ``hdbscan``: ICP-Flow's choice, through ``fast-hdbscan`` (the ``hdbscan`` extra; scikit-learn's
  ``HDBSCAN`` had not finished after 10 minutes on that cloud): 3.1 s of CPU on the same centroids plus
  2 s to import, and numba compiles it once per environment (about a minute of CPU). On the generated
  pairs it was not better (mean EPE3D 0.0059 m against 0.0037 m; one pair 4x worse), so it is the
  option, not the default. Since ``rigid``'s sparse-object changes (histogram smoothing, spacing-aware
  IoU, box floor, attached fringe) it is better on both (16 generated 32-beam pairs: mean dynamic EPE
  0.114 m against 0.246 m; AV2 sample: 0.128 against 0.131-0.140) at about twice ``rigid``'s CPU time
  (7.2 s against 3.8 s): still the option, for its time and dependency.

Both can run on voxel centroids (``voxel_size``: cluster one centroid per occupied voxel and give every
point its voxel's label).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import ShapeError, UnknownNameError, require, require_open3d

__all__ = ["CLUSTERING_METHODS", "cluster_points", "voxel_index"]

#: ``dbscan`` (open3d) and ``hdbscan`` (fast-hdbscan, as ICP-Flow's HDBSCAN)
CLUSTERING_METHODS = ("dbscan", "hdbscan")


def voxel_index(points: np.ndarray, voxel_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Group points by voxel: ``(centroids (V, 3), inverse (N,))`` with ``points[i]`` in voxel ``inverse[i]``."""
    key = np.floor(points / voxel_size).astype(np.int64)
    key -= key.min(0)
    span = key.max(0) + 1
    lin = (key[:, 0] * span[1] + key[:, 1]) * span[2] + key[:, 2]
    _, first, inverse = np.unique(lin, return_index=True, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(first)).astype(np.float64)
    cent = np.stack([np.bincount(inverse, weights=points[:, d], minlength=len(first)) for d in range(3)], 1)
    return cent / counts[:, None], inverse


def cluster_points(
    points,
    eps: float = 0.25,
    min_points: int = 20,
    max_clusters: Optional[int] = 200,
    min_cluster_size: Optional[int] = None,
    voxel_size: Optional[float] = None,
    method: str = "dbscan",
) -> np.ndarray:
    """Cluster labels of ``points (N, 3)``: ``(N,)`` int64, clusters ``0..K-1`` by decreasing size, -1 = none.

    Args:
        eps: DBSCAN neighbourhood radius in metres (ICP-Flow: 0.25).
        min_points: DBSCAN core-point threshold (ICP-Flow: ``min_cluster_size``, 20). With
            ``voxel_size`` it counts voxel centroids.
        max_clusters: keep only the largest clusters (ICP-Flow ``num_clusters``: 200); None keeps all.
        min_cluster_size: drop clusters with fewer points (default: ``min_points``).
        voxel_size: cluster voxel centroids of this size instead of all points (faster on dense sweeps).
        method: ``"dbscan"`` (open3d ``cluster_dbscan(eps, min_points)``) or ``"hdbscan"`` (fast-hdbscan's
            ``HDBSCAN(min_cluster_size=min_points)``, ICP-Flow's setting with ``min_samples`` left to it;
            ``eps`` unused).

    Deterministic: labels are renumbered by decreasing size (ties by the smallest point index).
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ShapeError(f"cluster_points points: expected shape (N, 3), found {pts.shape}")
    if not eps > 0 or int(min_points) < 1:
        raise ShapeError(f"cluster_points: expected eps > 0 and min_points >= 1, found {eps}, {min_points}")
    n = len(pts)
    labels = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return labels
    if method not in CLUSTERING_METHODS:
        raise UnknownNameError(f"cluster_points method: expected one of {CLUSTERING_METHODS}, found {method!r}")
    if voxel_size:
        cent, inverse = voxel_index(pts, float(voxel_size))
    else:
        cent, inverse = pts, np.arange(n)
    if method == "hdbscan":
        hdbscan = require("fast_hdbscan", "fast-hdbscan")
        raw = np.asarray(hdbscan.HDBSCAN(min_cluster_size=int(min_points)).fit(cent).labels_, dtype=np.int64)[inverse]
    else:
        o3d = require_open3d()
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cent))
        raw = np.asarray(cloud.cluster_dbscan(eps=float(eps), min_points=int(min_points)), dtype=np.int64)[inverse]
    min_size = int(min_points if min_cluster_size is None else min_cluster_size)
    valid = raw >= 0
    if not valid.any():
        return labels
    ids, first, counts = np.unique(raw[valid], return_index=True, return_counts=True)
    keep = counts >= min_size
    ids, first, counts = ids[keep], first[keep], counts[keep]
    order = np.lexsort((first, -counts))
    if max_clusters is not None:
        order = order[: int(max_clusters)]
    remap = np.full(int(raw.max()) + 1, -1, dtype=np.int64)
    remap[ids[order]] = np.arange(len(order))
    labels[valid] = remap[raw[valid]]
    return labels
