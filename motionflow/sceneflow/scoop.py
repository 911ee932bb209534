"""SCOOP (Lang, Aiger, Cole, Avidan, Moeller, CVPR 2023): learned soft correspondences + runtime refinement.

SCOOP (``itailang/SCOOP`` @ 9f41e8ba) has two stages:

1. **Correspondence flow** (``models/scoop.py``): FLOT's point-feature network
   (:class:`~motionflow.sceneflow.point_features.PointFeatureNet`, trained self-supervised:
   :mod:`motionflow.train.scoop`), then :func:`~motionflow.sceneflow.correspondence.soft_correspondences`:
   cosine cost, support of **10 m**, **one** unbalanced Sinkhorn iteration in the official multiplicative
   form (``+1e-8`` in both denominators), the learned ``eps = exp(eps_hat) + 0.03`` and
   ``gamma = exp(gamma_hat)``, soft target = the **top-64** plan entries normalised with ``+1e-8``,
   initial flow ``F0 = target - x``, confidence ``max(0, sum w S)``.
2. **Refinement** (``models/refiner.py``): a free per-point residual ``R`` (zeros, float32), Adam (defaults),
   loss ``= mean_i c_i min_j |x_i + F0_i + R_i - y_j|^2`` (+ ``backward_weight`` x the backward term)
   ``+ smooth_weight x mean_i mean_j |F_i - F_j|_1`` over the **31** nearest other points (the official
   ``nb_neigh_smooth_flow = 32`` takes columns 1..32 of a 32-column graph whose column 0 is the point
   itself), the loss evaluated before each update, and the **last** iterate returned.

Per-dataset settings of the official scripts (``preset=``, :data:`REFINE_PRESETS`):

===============  ========================================  ======  =====  ========  ============  ======
preset           script                                    points  steps  lr        backward w.   smooth
===============  ========================================  ======  =====  ========  ============  ======
``kitti-t``      ``evaluate_on_kitti_t.sh`` (default)      2048    1000   0.05      0             31
``kitti-o``      ``evaluate_on_kitti_o.sh``                2048    1000   0.05      0             31
``kitti-s``      ``evaluate_on_kitti_s.sh``                8192    1000   0.05      1             31
``ft3d-s``       ``evaluate_on_ft3d_s.sh``                 8192    1000   0.1       1             16
``all-points``   ``evaluate_on_kitti_{o,t}_all_points.sh``  all     150    0.2       0             31
===============  ========================================  ======  =====  ========  ============  ======

With ``points`` the network and the refinement run on that many random points of each cloud (the official
``--all_points 0`` evaluation; every other pc1 point takes the flow of its nearest fitted point). With
``all-points`` the features are computed on random chunks of ``points`` (2048) points of each cloud, every
source chunk is matched against **all** target points, and all source points are refined
(``--all_points 1 --all_candidates 1``).

Two feature modes (``features=``):

* ``"learned"`` (with ``checkpoint=PATH``: a SCOOP ``.tar``, a FLOT ``.tar`` -- its feature net, eps, gamma
  -- or ``motionflow train --model scoop``'s ``model.pth``): SCOOP as published.
* ``"fpfh"`` (default without a checkpoint): **training-free** geometric features (open3d FPFH, 33-d),
  eps 0.03 and gamma 1 fixed, the log-domain Sinkhorn, a **2 m** support (with these weaker features a
  10 m support gives a 1.5 m initial EPE on the AV2 sample, 2 m gives 0.69 m), points without a target
  within it keep a zero initial flow, and the OT runs on at most ``corr_points`` (8192) points per cloud.
  ``"xyz"`` uses the raw coordinates as features.

Axes (``frame=``, learned mode): the networks were trained on FlowNet3D / HPLFlowNet data whose axes are
``(x left, y up, z forward)``; FLOT's and SCOOP's KITTI_o loaders permute the stored lidar axes with
``(1, 2, 0)``. ``frame="lidar"`` (default: x forward, y left, z up) applies that permutation to the
network's input; ``frame="camera"`` passes the points unchanged (HPLFlowNet's KITTI_s / FT3D_s frame).
The flow itself is computed in the caller's frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..errors import CheckpointError, UnknownNameError, require_open3d
from ..ops.chamfer import chamfer_distance
from ..ops.neighbors import knn_indices
from ..ops.smoothness import knn_graph, knn_smoothness
from .base import EstimateOutput, SceneFlowMethod, extend_to_points, random_subset
from .correspondence import Correspondences, soft_correspondences
from .point_features import PointFeatureNet, load_point_features, read_point_feature_checkpoint
from .stopping import StopCriteria, optimize

FEATURES = ("fpfh", "xyz", "learned")
FRAMES = {"lidar": (1, 2, 0), "camera": (0, 1, 2)}


@dataclass(frozen=True)
class RefinePreset:
    """One official evaluation script's settings (see the module docstring)."""

    points: Optional[int]
    steps: int
    lr: float
    backward_weight: float
    smooth_neighbors: int


#: The official evaluation scripts' settings (``scripts/evaluate_on_*.sh``).
REFINE_PRESETS = {
    "kitti-t": RefinePreset(2048, 1000, 0.05, 0.0, 31),
    "kitti-o": RefinePreset(2048, 1000, 0.05, 0.0, 31),
    "kitti-s": RefinePreset(8192, 1000, 0.05, 1.0, 31),
    "ft3d-s": RefinePreset(8192, 1000, 0.1, 1.0, 16),
    "all-points": RefinePreset(None, 150, 0.2, 0.0, 31),
}
#: SCOOP's chunk size of the all-points evaluation (``nb_points``).
CHUNK_POINTS = 2048


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


def training_loss(corr: Correspondences, pc2: torch.Tensor, graph: torch.Tensor, conf_weight: float = 0.1,
                  smooth_weight: float = 10.0, backward_weight: float = 0.0, use_confidence: bool = True):
    """SCOOP's self-supervised loss (``tools/losses.py: compute_loss_unsupervised``), batched.

    ``loss = recon + conf_weight (1 - mean c) + smooth_weight smooth`` with ``recon`` the confidence-weighted
    squared Chamfer of the soft targets to ``pc2`` (+ ``backward_weight`` x the backward term) and ``smooth``
    the L1 smoothness of the initial flow over ``graph (B, N, k)`` (the nearest *other* points).

    Returns:
        ``(loss, recon, conf_loss, smooth)`` scalar tensors (means over the batch's points).
    """
    recon, smooth = [], []
    for b in range(pc2.shape[0]):
        w = corr.confidence[b] if use_confidence else None
        recon.append(chamfer_distance(corr.target[b], pc2[b], weights=w, backward_weight=backward_weight,
                                      bidirectional=backward_weight > 0, check_finite=False))
        smooth.append(knn_smoothness(None, corr.flow[b], graph=graph[b]))
    recon, smooth = torch.stack(recon).mean(), torch.stack(smooth).mean()
    conf_loss = 1 - corr.confidence.mean() if use_confidence else torch.zeros_like(recon)
    loss = recon + (conf_weight * conf_loss if use_confidence and conf_weight > 0 else 0) + smooth_weight * smooth
    return loss, recon, conf_loss, smooth


def refinement_loss(pc1: torch.Tensor, pc2: torch.Tensor, flow: torch.Tensor, confidence: Optional[torch.Tensor],
                    graph: Optional[torch.Tensor], backward_weight: float = 0.0, smooth_weight: float = 1.0):
    """SCOOP's refinement loss of ``flow (N, 3)`` (``models/refiner.py``): ``(loss, recon, smooth)``."""
    recon = chamfer_distance(pc1 + flow, pc2, weights=confidence, backward_weight=backward_weight,
                             bidirectional=backward_weight > 0, check_finite=False)
    if graph is None or smooth_weight <= 0:
        return recon, recon, torch.zeros_like(recon)
    smooth = knn_smoothness(None, flow, graph=graph)
    return recon + smooth_weight * smooth, recon, smooth


def refine_flow(pc1: torch.Tensor, pc2: torch.Tensor, flow0: torch.Tensor, confidence: Optional[torch.Tensor],
                stop: StopCriteria, lr: float = 0.05, smooth_neighbors: int = 31, smooth_weight: float = 1.0,
                backward_weight: float = 0.0, progress: bool = False):
    """SCOOP's runtime refinement: Adam on a zero-initialised residual, the **last** iterate.

    Returns:
        ``(flow (N, 3), residual (the parameter: its .grad is the gradient of the last step's loss), log)``.
    """
    residual = torch.zeros_like(pc1, requires_grad=True)
    graph = knn_graph(pc1, smooth_neighbors) if smooth_weight > 0 else None
    optimizer = torch.optim.Adam([residual], lr=lr)

    def loss_fn():
        return refinement_loss(pc1, pc2, flow0 + residual, confidence, graph, backward_weight, smooth_weight)[0]

    log = optimize(loss_fn, [residual], optimizer, stop, progress=progress, desc="scoop", keep="last")
    return (flow0 + residual).detach(), residual, log


def _permute(points: torch.Tensor, frame: str) -> torch.Tensor:
    return points[..., list(FRAMES[frame])]


def learned_correspondences(net: PointFeatureNet, pc1: torch.Tensor, pc2: torch.Tensor, frame: str = "lidar",
                            iters: int = 1, top_k: Optional[int] = 64, max_distance: float = 10.0,
                            linear_confidence: bool = False) -> Correspondences:
    """SCOOP's forward (``SCOOP.forward``) on ``pc1 (B, N, 3)``, ``pc2 (B, M, 3)`` in the caller's frame."""
    f1, _ = net(_permute(pc1, frame))
    f2, _ = net(_permute(pc2, frame))
    return soft_correspondences(pc1, pc2, f1, f2, net.transport_eps(), net.transport_gamma(), iters=iters,
                                top_k=top_k, max_distance=max_distance, linear_confidence=linear_confidence)


def _chunk_features(net: PointFeatureNet, points: torch.Tensor, gen: torch.Generator, chunk: int):
    """Features of every point of ``points (N, 3)``, computed on random chunks of ``chunk`` points
    (SCOOP's all-points mode: the cloud is permuted and padded by repeating the permutation)."""
    n = points.shape[0]
    perm = torch.randperm(n, generator=gen).to(points.device)
    total = -(-n // chunk) * chunk
    order = perm.repeat(-(-total // n))[:total]  # padded by repeating the permutation (as SCOOP's loader)
    feats, _ = net(points[order].reshape(-1, chunk, 3))
    out = torch.empty((n, feats.shape[-1]), dtype=feats.dtype, device=feats.device)
    out[order[:n]] = feats.reshape(-1, feats.shape[-1])[:n]
    return out


class SCOOPRefine(SceneFlowMethod):
    """SCOOP: soft correspondences + runtime refinement (registered as ``scoop``). See the module docstring.

    Args:
        checkpoint: SCOOP / FLOT / motionflow checkpoint of the point-feature net (selects ``features="learned"``).
        features: ``"learned"``, ``"fpfh"`` (training-free, default without a checkpoint) or ``"xyz"``.
        preset: :data:`REFINE_PRESETS` name (default ``kitti-t``); ``stop``, ``lr``, ``backward_weight``,
            ``smooth_neighbors`` and ``points`` override it.
        stop: :class:`StopCriteria` or dict (default: exactly the preset's steps, no early stopping, losses
            checked every 50 steps).
        smooth_weight: weight of the smoothness term (1.0).
        use_confidence: weight the forward Chamfer by the correspondence confidence.
        points: learned mode: fit on this many random points per cloud (the preset's 2048 / 8192; None: all);
            with ``preset="all-points"`` the size of the feature chunks (SCOOP's ``nb_points``, 2048).
        frame: ``"lidar"`` or ``"camera"`` axes of the input (learned mode, see the module docstring).
        graph: ``"kdtree"`` or ``"expanded"`` feature graph (:func:`~motionflow.sceneflow.point_features.point_graph`).
        eps, gamma, sinkhorn_iters, top_k, max_distance: the OT stage. Learned mode: the checkpoint's eps,
            gamma, ``nb_iter`` and ``nb_neigh_cross_recon`` (64 for FLOT files), 10 m. FPFH mode: 0.03, 1, 1,
            64, 2 m.
        corr_points: FPFH mode: at most this many points per cloud enter the dense OT (8192).
        init: ``"ot"`` (SCOOP) or ``"zero"`` / ``"nn"`` initial flow.
        **base: :class:`~motionflow.sceneflow.base.SceneFlowMethod` options.
    """

    name = "scoop"

    def __init__(self, checkpoint=None, features: Optional[str] = None, preset: str = "kitti-t", stop=None,
                 lr: Optional[float] = None, smooth_weight: float = 1.0, smooth_neighbors: Optional[int] = None,
                 backward_weight: Optional[float] = None, use_confidence: bool = True, points="preset",
                 frame: str = "lidar", graph: str = "kdtree", eps: Optional[float] = None,
                 gamma: Optional[float] = None, sinkhorn_iters: Optional[int] = None, top_k: Optional[int] = None,
                 max_distance: Optional[float] = None, corr_points: int = 8192, init: str = "ot", **base):
        features = features or ("learned" if checkpoint is not None else "fpfh")
        for label, value, choices in (("features", features, FEATURES), ("preset", preset, tuple(REFINE_PRESETS)),
                                      ("frame", frame, tuple(FRAMES)), ("init", init, ("ot", "zero", "nn"))):
            if value not in choices:
                raise UnknownNameError(f"scoop {label}: expected one of {list(choices)}, found {value!r}")
        if features == "learned" and checkpoint is None:
            raise CheckpointError("scoop features='learned' needs checkpoint=PATH (a SCOOP .tar, FLOT's "
                                  "model_2048.tar / model_8192.tar, or motionflow train --model scoop's model.pth)")
        if features != "learned" and checkpoint is not None:
            raise UnknownNameError(f"scoop: checkpoint= gives learned features; features={features!r} ignores it")
        self.preset = REFINE_PRESETS[preset]
        self.learned = features == "learned"
        points = self.preset.points if points == "preset" else points
        self.all_points = self.learned and preset == "all-points"
        self.chunk_points = int(points or CHUNK_POINTS) if self.all_points else None
        if self.learned and not self.all_points:
            base.setdefault("max_points", points)
        super().__init__(**base)
        self.features, self.frame, self.init = features, frame, init
        self.stop = StopCriteria.coerce(stop, max_iters=self.preset.steps, min_delta=0.0, patience=0, check_every=50)
        self.lr = self.preset.lr if lr is None else float(lr)
        self.smooth_weight, self.use_confidence = float(smooth_weight), bool(use_confidence)
        self.smooth_neighbors = self.preset.smooth_neighbors if smooth_neighbors is None else int(smooth_neighbors)
        self.backward_weight = self.preset.backward_weight if backward_weight is None else float(backward_weight)
        self.corr_points = int(corr_points)
        self.net = None
        if self.learned:
            ckpt = read_point_feature_checkpoint(checkpoint)
            self.net = load_point_features(PointFeatureNet(graph=graph), ckpt).eval()
            self.net.requires_grad_(False)
            top_k = top_k if top_k is not None else (ckpt.nb_neigh_cross_recon or 64)
            self.ot = dict(iters=ckpt.nb_iter if sinkhorn_iters is None else int(sinkhorn_iters), top_k=int(top_k),
                           max_distance=10.0 if max_distance is None else float(max_distance),
                           linear_confidence=ckpt.linear_corr_conf)
            if eps is not None or gamma is not None:
                raise UnknownNameError("scoop: eps / gamma are learned (read from the checkpoint); "
                                       "they are options of the training-free features only")
        else:
            self.ot = dict(eps=0.03 if eps is None else eps, gamma=1.0 if gamma is None else gamma,
                           iters=1 if sinkhorn_iters is None else int(sinkhorn_iters),
                           top_k=64 if top_k is None else int(top_k),
                           max_distance=2.0 if max_distance is None else float(max_distance))

    def initial_flow(self, pc1: torch.Tensor, pc2: torch.Tensor):
        """Initial flow ``(n, 3)`` and confidence ``(n,)`` on ``pc1``."""
        ones = torch.ones(pc1.shape[0], device=pc1.device)
        if self.init == "zero":
            return torch.zeros_like(pc1), ones
        if self.init == "nn":
            return pc2[knn_indices(pc1, pc2, k=1)[:, 0]] - pc1, ones
        if self.learned:
            return self._learned_flow(pc1, pc2)
        gen = torch.Generator().manual_seed(self.seed + 1)
        i1 = random_subset(pc1.shape[0], self.corr_points, gen)
        i2 = random_subset(pc2.shape[0], self.corr_points, gen)
        a = pc1 if i1 is None else pc1[i1.to(pc1.device)]
        b = pc2 if i2 is None else pc2[i2.to(pc2.device)]
        fa, fb = (fpfh_features(a), fpfh_features(b)) if self.features == "fpfh" else (a, b)
        corr = soft_correspondences(a[None], b[None], fa[None], fb[None], log_domain=True, **self.ot)
        flow, conf = corr.flow[0], corr.confidence[0]
        if i1 is not None:
            idx = knn_indices(pc1, a, k=1)[:, 0]
            flow, conf = flow[idx], conf[idx]
        return flow, conf

    def _learned_flow(self, pc1: torch.Tensor, pc2: torch.Tensor):
        self.net.to(pc1.device)
        if not self.all_points:
            corr = learned_correspondences(self.net, pc1[None], pc2[None], self.frame, **self.ot)
            return corr.flow[0], corr.confidence[0]
        gen = torch.Generator().manual_seed(self.seed + 1)
        f1 = _chunk_features(self.net, _permute(pc1, self.frame), gen, self.chunk_points)
        f2 = _chunk_features(self.net, _permute(pc2, self.frame), gen, self.chunk_points)
        eps, gamma = self.net.transport_eps(), self.net.transport_gamma()
        flows, confs = [], []
        for start in range(0, pc1.shape[0], self.chunk_points):  # every source chunk against all target points
            sl = slice(start, start + self.chunk_points)
            corr = soft_correspondences(pc1[None, sl], pc2[None], f1[None, sl], f2[None], eps, gamma, **self.ot)
            flows.append(corr.flow[0])
            confs.append(corr.confidence[0])
        return torch.cat(flows), torch.cat(confs)

    def _estimate(self, pc1, pc2, query):
        with torch.no_grad():
            flow0, conf = self.initial_flow(pc1, pc2)
        flow, _, log = refine_flow(pc1, pc2, flow0, conf if self.use_confidence else None, self.stop, lr=self.lr,
                                   smooth_neighbors=self.smooth_neighbors, smooth_weight=self.smooth_weight,
                                   backward_weight=self.backward_weight, progress=self.progress)
        return EstimateOutput(flow=extend_to_points(pc1, flow, query), iterations=log.iterations,
                              loss_trace=log.loss_trace, converged=log.converged,
                              extras={"initial_flow_mean_norm": float(flow0.norm(dim=1).mean()),
                                      "confidence_mean": float(conf.mean()), "best_loss": log.best_loss,
                                      "features": self.features, "initial_flow": extend_to_points(pc1, flow0, query).cpu().numpy()})
