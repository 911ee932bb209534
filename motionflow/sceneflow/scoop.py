"""SCOOP's runtime flow refinement (Lang, Aiger, Cole, Avidan, Moeller, CVPR 2023), on an OT initial flow.

SCOOP (``itailang/SCOOP``) has two stages:

1. **Correspondence flow.** Point features of both clouds, L2-normalised; cost ``C = 1 - cos``; transport
   support restricted to pairs closer than 10 m; unbalanced Sinkhorn (``tools/ot.py``; 1 iteration by
   default, ``eps = exp(eps_hat) + 0.03``, ``gamma = exp(gamma_hat)``, learned); the soft target of a source
   point is the transport-weighted mean of its **top-64** targets; ``initial flow = target - source``;
   the correspondence confidence comes from the feature similarity.
2. **Refinement** (``models/refiner.py``): a free per-point residual ``R`` (zeros), Adam, loss =
   confidence-weighted squared Chamfer of ``pc1 + F + R`` to pc2 (+ ``backward_weight`` times the backward
   term) + ``smooth_weight`` x k-NN smoothness (k = 32, :func:`motionflow.ops.smoothness.knn_smoothness`)
   of ``F + R``; **1000 steps at lr 0.05** (the KITTI scripts), no early stopping.

Deviations: SCOOP's features come from a network trained self-supervised on the target domain; the
default here is **training-free geometric features** (``features="fpfh"``: open3d FPFH descriptors,
33-d) with ``eps=0.03``, ``gamma=1`` fixed, so no checkpoint is needed; with these weaker features the
transport support is restricted to pairs closer than **2 m** (SCOOP: 10 m; on the AV2 sample a 10 m
support gives a 1.5 m initial EPE, 2 m gives 0.69 m, and the refined flow 0.07 m instead of 1.5 m). ``features="xyz"`` uses the raw
coordinates. The confidence is the transport-weighted cosine similarity of the top-k targets, clipped to
[0, 1]. The OT runs densely on at most ``corr_points`` points per cloud (default 8192: an 8192 x 8192
plan is 256 MiB in float32); other points take the flow of their nearest OT point. The refinement
is per point, so with ``max_points`` the refined flow of the fit points is copied to the other points by
nearest neighbour.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..errors import UnknownNameError, require_open3d
from ..ops.chamfer import chamfer_distance
from ..ops.neighbors import knn_indices
from ..ops.transport import sinkhorn
from ..ops.smoothness import knn_graph, knn_smoothness
from .base import EstimateOutput, SceneFlowMethod, extend_to_points, random_subset
from .stopping import StopCriteria, optimize

FEATURES = ("fpfh", "xyz")


def fpfh_features(points: torch.Tensor, normal_radius: float = 0.5, feature_radius: float = 1.0,
                  max_nn: int = 64) -> torch.Tensor:
    """Fast Point Feature Histograms ``(N, 33)`` (open3d), on the points' device, as float32."""
    o3d = require_open3d()
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.detach().cpu().double().numpy()))
    pc.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=normal_radius, max_nn=30))
    pc.orient_normals_towards_camera_location(np.zeros(3))
    feat = o3d.pipelines.registration.compute_fpfh_feature(
        pc, o3d.geometry.KDTreeSearchParamHybrid(radius=feature_radius, max_nn=max_nn))
    return torch.from_numpy(np.asarray(feat.data).T.astype(np.float32)).to(points.device)


def soft_correspondence_flow(pc1: torch.Tensor, pc2: torch.Tensor, feat1: torch.Tensor, feat2: torch.Tensor,
                             eps: float = 0.03, gamma: Optional[float] = 1.0, iters: int = 1, top_k: int = 64,
                             max_distance: float = 10.0):
    """SCOOP's initial flow from an entropic transport plan on features.

    Returns:
        ``(flow (N, 3), confidence (N,))``.
    """
    f1 = feat1 / torch.sqrt((feat1 ** 2).sum(-1, keepdim=True) + 1e-8)
    f2 = feat2 / torch.sqrt((feat2 ** 2).sum(-1, keepdim=True) + 1e-8)
    sim = f1 @ f2.T
    support = torch.cdist(pc1, pc2) < max_distance
    plan = sinkhorn(1.0 - sim, eps, iters, unbalanced=gamma, support=support)
    k = min(top_k, pc2.shape[0])
    w, idx = torch.topk(plan, k, dim=1)
    norm = w.sum(1, keepdim=True)
    w = torch.where(norm > 0, w / norm.clamp_min(1e-30), torch.full_like(w, 1.0 / k))
    target = (w[..., None] * pc2[idx]).sum(1)
    conf = (w * torch.gather(sim, 1, idx)).sum(1).clamp(0, 1)
    # points with no transport support keep zero flow and zero confidence
    empty = norm[:, 0] <= 0
    flow = torch.where(empty[:, None], torch.zeros_like(target), target - pc1)
    conf = torch.where(empty, torch.zeros_like(conf), conf)
    return flow, conf


class SCOOPRefine(SceneFlowMethod):
    """SCOOP-style correspondence flow + runtime refinement (registered as ``scoop``).

    Args:
        stop: :class:`StopCriteria` or dict (default: exactly 1000 steps, no early stopping, losses
            checked every 50 steps).
        lr: Adam learning rate of the residual (0.05).
        smooth_weight: weight of the k-NN smoothness term (1.0).
        k: smoothness neighbours (32).
        backward_weight: weight of the backward Chamfer term (0 = forward only; SCOOP uses 1 on KITTI_s).
        use_confidence: weight the forward Chamfer by the correspondence confidence.
        features: ``"fpfh"`` (default) or ``"xyz"``.
        eps, gamma, sinkhorn_iters, top_k, max_distance: the OT stage (max_distance: 2 m, SCOOP 10 m).
        corr_points: at most this many points per cloud enter the dense OT.
        init: ``"ot"`` (SCOOP) or ``"zero"`` / ``"nn"`` initial flow.
        **base: :class:`~motionflow.sceneflow.base.SceneFlowMethod` options.
    """

    name = "scoop"

    def __init__(self, stop=None, lr: float = 0.05, smooth_weight: float = 1.0, k: int = 32,
                 backward_weight: float = 0.0, use_confidence: bool = True, features: str = "fpfh",
                 eps: float = 0.03, gamma: Optional[float] = 1.0, sinkhorn_iters: int = 1, top_k: int = 64,
                 max_distance: float = 2.0, corr_points: int = 8192, init: str = "ot", **base):
        super().__init__(**base)
        if features not in FEATURES:
            raise UnknownNameError(f"scoop features: expected one of {FEATURES}, found {features!r}")
        if init not in ("ot", "zero", "nn"):
            raise UnknownNameError(f"scoop init: expected 'ot', 'zero' or 'nn', found {init!r}")
        self.stop = StopCriteria.coerce(stop, max_iters=1000, min_delta=0.0, patience=0, check_every=50)
        self.lr = lr
        self.smooth_weight = smooth_weight
        self.k = k
        self.backward_weight = backward_weight
        self.use_confidence = use_confidence
        self.features = features
        self.ot = dict(eps=eps, gamma=gamma, iters=sinkhorn_iters, top_k=top_k, max_distance=max_distance)
        self.corr_points = corr_points
        self.init = init

    def initial_flow(self, pc1: torch.Tensor, pc2: torch.Tensor):
        """Initial flow ``(n, 3)`` and confidence ``(n,)`` on ``pc1``."""
        if self.init == "zero":
            return torch.zeros_like(pc1), torch.ones(pc1.shape[0], device=pc1.device)
        if self.init == "nn":
            idx = knn_indices(pc1, pc2, k=1)[:, 0]
            return pc2[idx] - pc1, torch.ones(pc1.shape[0], device=pc1.device)
        gen = torch.Generator().manual_seed(self.seed + 1)
        i1 = random_subset(pc1.shape[0], self.corr_points, gen)
        i2 = random_subset(pc2.shape[0], self.corr_points, gen)
        a = pc1 if i1 is None else pc1[i1.to(pc1.device)]
        b = pc2 if i2 is None else pc2[i2.to(pc2.device)]
        if self.features == "fpfh":
            fa, fb = fpfh_features(a), fpfh_features(b)
        else:
            fa, fb = a, b
        flow, conf = soft_correspondence_flow(a, b, fa, fb, **self.ot)
        if i1 is not None:
            idx = knn_indices(pc1, a, k=1)[:, 0]
            flow, conf = flow[idx], conf[idx]
        return flow, conf

    def _estimate(self, pc1, pc2, query):
        with torch.no_grad():
            flow0, conf = self.initial_flow(pc1, pc2)
        residual = torch.zeros_like(pc1, requires_grad=True)
        graph = knn_graph(pc1, self.k) if self.smooth_weight > 0 else None
        weights = conf if self.use_confidence else None
        optimizer = torch.optim.Adam([residual], lr=self.lr)

        def loss_fn():
            flow = flow0 + residual
            loss = chamfer_distance(pc1 + flow, pc2, weights=weights, backward_weight=self.backward_weight,
                                    bidirectional=self.backward_weight > 0, check_finite=False)
            if graph is not None:
                loss = loss + self.smooth_weight * knn_smoothness(pc1, flow, graph=graph)
            return loss

        log = optimize(loss_fn, [residual], optimizer, self.stop, progress=self.progress, desc=self.name)
        fitted = (flow0 + residual).detach()
        return EstimateOutput(flow=extend_to_points(pc1, fitted, query), iterations=log.iterations,
                              loss_trace=log.loss_trace, converged=log.converged,
                              extras={"initial_flow_mean_norm": float(flow0.norm(dim=1).mean()),
                                      "confidence_mean": float(conf.mean()), "best_loss": log.best_loss})
