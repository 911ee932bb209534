"""Closed-form baselines: ``zero``, ``nn`` (nearest neighbour) and ``icp`` (one rigid motion for the scene).

They set the floor every optimisation method must beat:

* ``zero``: flow 0 (after ego compensation, if asked: then the flow is the ego flow);
* ``nn``: ``flow(p) = NN_pc2(p) - p`` -- the flow a Chamfer loss is minimised by, per point;
* ``icp``: robust point-to-plane ICP (open3d) of pc1 onto pc2, ``flow(p) = T p - p``.
"""

from __future__ import annotations

import torch

from ..ops.geometry import ego_flow
from ..ops.neighbors import knn_indices
from .base import EstimateOutput, SceneFlowMethod
from .ego import rigid_icp


class ZeroFlow(SceneFlowMethod):
    """Flow 0 (plus the ego flow with ``compensate_ego=True``)."""

    name = "zero"

    def _estimate(self, pc1, pc2, query):
        return EstimateOutput(flow=torch.zeros_like(query))


class NearestNeighbourFlow(SceneFlowMethod):
    """Flow to the nearest pc2 point (KD-tree). Every pc1 point is queried against the fit pc2."""

    name = "nn"

    def __init__(self, knn_backend: str = "auto", **base):
        super().__init__(**base)
        self.knn_backend = knn_backend

    def _estimate(self, pc1, pc2, query):
        idx = knn_indices(query, pc2, k=1, backend=self.knn_backend)[:, 0]
        return EstimateOutput(flow=pc2[idx] - query)


class ICPFlow(SceneFlowMethod):
    """One rigid motion for the whole scene: robust point-to-plane ICP (open3d), ``flow = T p - p``.

    Args:
        levels, robust, point_to_plane: see :func:`motionflow.sceneflow.ego.rigid_icp`.
    """

    name = "icp"

    def __init__(self, levels=((0.5, 2.0, 30), (0.25, 1.0, 30), (0.1, 0.5, 30)), robust: float = 0.3,
                 point_to_plane: bool = True, **base):
        super().__init__(**base)
        self.levels = tuple(tuple(level) for level in levels)
        self.robust = robust
        self.point_to_plane = point_to_plane

    def _estimate(self, pc1, pc2, query):
        res = rigid_icp(pc1.cpu().numpy(), pc2.cpu().numpy(), levels=self.levels, robust=self.robust,
                        point_to_plane=self.point_to_plane)
        flow = ego_flow(query, torch.as_tensor(res.transform, dtype=query.dtype, device=query.device))
        return EstimateOutput(flow=flow, extras={"transform": res.transform, "fitness": res.fitness,
                                                          "inlier_rmse": res.inlier_rmse})
