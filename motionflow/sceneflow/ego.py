"""Ego-motion estimation by robust point-to-plane ICP on the full clouds (ground included).

Static structure dominates a lidar sweep, so a robust rigid fit of pc1 onto pc2 recovers the ego motion
``T`` (pc1 frame -> pc2 frame; for static points ``pc1 + flow = T pc1``). The ground must stay in: it
pins z, roll and pitch. NSFP's pseudo-labels refine the ego pose with point-to-point ICP (1 m, 100
iterations); here it is coarse-to-fine point-to-plane ICP with a Tukey kernel (open3d), which tolerates
moving objects as outliers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ..errors import ShapeError, require_open3d


@dataclass
class EgoMotion:
    """Result of :func:`estimate_ego_motion`."""

    transform: np.ndarray  # (4, 4) pc1 -> pc2
    fitness: float  # share of pc1 points with a correspondence at the finest level
    inlier_rmse: float  # metres, at the finest level


def _cloud(o3d, points: np.ndarray, voxel: float):
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64)))
    if voxel > 0:
        pc = pc.voxel_down_sample(voxel)
    pc.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=max(3 * voxel, 0.3), max_nn=30))
    return pc


def rigid_icp(source, target, init: Optional[np.ndarray] = None,
              levels: Sequence[tuple] = ((0.5, 2.0, 30), (0.25, 1.0, 30), (0.1, 0.5, 30)),
              robust: float = 0.3, point_to_plane: bool = True) -> EgoMotion:
    """Coarse-to-fine robust ICP aligning ``source (N, 3)`` onto ``target (M, 3)``.

    Args:
        init: initial ``(4, 4)`` guess (identity by default).
        levels: ``(voxel_size, max_correspondence_distance, iterations)`` per level, coarse to fine
            (metres).
        robust: Tukey kernel scale (metres, applied to point-to-plane residuals); 0 disables it.
        point_to_plane: point-to-plane (normals of the target) or point-to-point.

    Returns:
        :class:`EgoMotion` with the transform mapping source coordinates to target coordinates.
    """
    o3d = require_open3d()
    src = np.asarray(source, dtype=np.float64)
    tgt = np.asarray(target, dtype=np.float64)
    for name, arr in (("source", src), ("target", tgt)):
        if arr.ndim != 2 or arr.shape[1] != 3 or len(arr) < 10 or not np.isfinite(arr).all():
            raise ShapeError(f"rigid_icp {name}: expected at least 10 finite (N, 3) points, found {arr.shape}")
    T = np.eye(4) if init is None else np.asarray(init, dtype=np.float64)
    reg = o3d.pipelines.registration
    result = None
    for voxel, max_corr, iters in levels:
        s = _cloud(o3d, src, voxel)
        t = _cloud(o3d, tgt, voxel)
        if point_to_plane:
            est = (reg.TransformationEstimationPointToPlane(reg.TukeyLoss(k=robust)) if robust > 0
                   else reg.TransformationEstimationPointToPlane())
        else:
            est = reg.TransformationEstimationPointToPoint()
        result = reg.registration_icp(s, t, max_corr, T, est, reg.ICPConvergenceCriteria(max_iteration=iters))
        T = np.asarray(result.transformation)
    return EgoMotion(transform=T.copy(), fitness=float(result.fitness), inlier_rmse=float(result.inlier_rmse))


def estimate_ego_motion(pc1, pc2, init: Optional[np.ndarray] = None, **icp_options) -> EgoMotion:
    """Ego motion ``T`` (pc1 frame -> pc2 frame) of two full lidar sweeps (keep the ground in).

    ``icp_options`` go to :func:`rigid_icp` (``levels``, ``robust``, ``point_to_plane``).
    """
    a = pc1.detach().cpu().numpy() if hasattr(pc1, "detach") else np.asarray(pc1)
    b = pc2.detach().cpu().numpy() if hasattr(pc2, "detach") else np.asarray(pc2)
    return rigid_icp(a, b, init=init, **icp_options)
