"""FLOT (Puy, Boulch, Marlet, ECCV 2020): scene flow by optimal transport on learned point features.

Official code ``valeoai/FLOT`` @ e355375a (``flot/models/scene_flow.py``), Apache-2.0; released weights
``flot/pretrained_models/model_2048.tar`` (trained on FT3D_o, 2048 points) and ``model_8192.tar`` (FT3D_s,
8192 points), copied in ``../shared/data/flot_pretrained/``. One forward pass, no optimisation:

1. features of both clouds (:class:`~motionflow.sceneflow.point_features.PointFeatureNet`, 32-NN graphs);
2. the transport plan of :func:`~motionflow.ops.transport.sinkhorn_scaling` with the checkpoint's
   ``eps = exp(epsilon) + 0.03``, ``gamma = exp(gamma)`` and ``nb_iter``, cosine cost, 10 m support;
3. ``ot_flow = (T y) / (sum_j T_ij + 1e-8) - x`` (:func:`~motionflow.sceneflow.correspondence.soft_correspondences`
   with ``top_k=None``);
4. refinement: three more SetConvs on the **flow** (``ref_conv1..3``, 3 -> 32 -> 64 -> 128, on pc1's graph)
   and ``fc`` (128 -> 3); ``flow = ot_flow + fc(...)``.

:class:`FLOTNet` holds all 58 official keys (``gamma``, ``epsilon``, ``feat_conv*``, ``ref_conv*``, ``fc``) and
loads a FLOT ``.tar`` strictly. The method ``flot`` runs it on at most ``max_points`` random points per
cloud (default 8192; FLOT evaluates on 2048 or 8192 sampled points) and gives every other pc1 point the
flow of its nearest fitted point. ``frame`` is as for ``scoop`` (:mod:`motionflow.sceneflow.scoop`): the
default ``"lidar"`` feeds the network FLOT's KITTI_o axis order ``(1, 2, 0)``.

Memory: the dense plan and its intermediates are ``N x M`` float32 matrices: 1.7 GB peak resident memory
for the whole process at 8192 points (measured; 6.5 s of CPU time on one thread).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import CheckpointError, UnknownNameError
from .base import EstimateOutput, SceneFlowMethod, extend_to_points
from .correspondence import Correspondences, soft_correspondences
from .point_features import PointFeatureNet, SetConv, edge_offsets, load_point_features, read_point_feature_checkpoint
from .scoop import FRAMES

#: where FLOT's released weights are (for the message of a missing checkpoint)
FLOT_WEIGHTS = ("valeoai/FLOT flot/pretrained_models/model_2048.tar and model_8192.tar (Apache-2.0; "
                "a copy is in ../shared/data/flot_pretrained/)")


@dataclass
class FLOTOutput:
    """:meth:`FLOTNet.flow`'s result: ``flow (B, N, 3)`` (refined), ``correspondences`` (``.flow`` is the
    OT flow, ``.plan`` the transport plan), ``feat1 (B, N, 128)``, ``feat2 (B, M, 128)``, ``edges (B, N, 32)``."""

    flow: torch.Tensor
    correspondences: Correspondences
    feat1: torch.Tensor
    feat2: torch.Tensor
    edges: torch.Tensor


class FLOTNet(PointFeatureNet):
    """FLOT with the official state-dict names (58 keys).

    ``flow(pc1 (B, N, 3), pc2 (B, M, 3)) -> FLOTOutput``, the points in the network's own axes.

    Args:
        nb_iter: Sinkhorn iterations (the checkpoint's ``nb_iter``; 1 for the released files).
        graph: ``"kdtree"`` or ``"expanded"`` (see :func:`~motionflow.sceneflow.point_features.point_graph`).
    """

    def __init__(self, nb_iter: int = 1, channels: int = 32, graph: str = "kdtree"):
        super().__init__(channels, graph)
        self.nb_iter = int(nb_iter)
        self.ref_conv1 = SetConv(3, channels)
        self.ref_conv2 = SetConv(channels, 2 * channels)
        self.ref_conv3 = SetConv(2 * channels, 4 * channels)
        self.fc = nn.Linear(4 * channels, 3)

    def refine(self, flow: torch.Tensor, points: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        """``flow + fc(ref_conv3(ref_conv2(ref_conv1(flow))))`` on ``points``' graph ``edges``."""
        offsets = edge_offsets(points, edges)
        x = self.ref_conv1(flow.transpose(1, 2), offsets, edges)
        x = self.ref_conv2(x, offsets, edges)
        x = self.ref_conv3(x, offsets, edges)
        return flow + self.fc(x.transpose(1, 2))

    def flow(self, pc1: torch.Tensor, pc2: torch.Tensor) -> FLOTOutput:
        feat1, edges = self(pc1)
        feat2, _ = self(pc2)
        corr = soft_correspondences(pc1, pc2, feat1, feat2, self.transport_eps(), self.transport_gamma(),
                                    iters=self.nb_iter, top_k=None)
        return FLOTOutput(self.refine(corr.flow, pc1, edges), corr, feat1, feat2, edges)


def load_flot(checkpoint, graph: str = "kdtree") -> FLOTNet:
    """A :class:`FLOTNet` with every key of a FLOT checkpoint (``{"model": ..., "nb_iter": ...}``), in eval mode."""
    ckpt = read_point_feature_checkpoint(checkpoint)
    if ckpt.layout != "flot":
        raise CheckpointError(f"flot checkpoint {ckpt.path!r}: expected FLOT's {{'model': ..., 'nb_iter': ...}} "
                              f"layout, found a {ckpt.layout} file (a SCOOP / motionflow feature net has no "
                              f"refinement weights: use it with --method scoop)")
    return load_point_features(FLOTNet(ckpt.nb_iter, graph=graph), ckpt).eval()


class FLOT(SceneFlowMethod):
    """FLOT from its released weights (registered as ``flot``). See the module docstring.

    Args:
        checkpoint: a FLOT ``.tar`` (required).
        frame: ``"lidar"`` (default) or ``"camera"`` input axes.
        graph: feature-graph construction (``"kdtree"`` exact, or the official ``"expanded"`` float32 form).
        **base: :class:`~motionflow.sceneflow.base.SceneFlowMethod` options (``max_points`` defaults to 8192).
    """

    name = "flot"

    def __init__(self, checkpoint=None, frame: str = "lidar", graph: str = "kdtree", **base):
        if checkpoint is None:
            raise CheckpointError(f"method 'flot' is a learned network and needs checkpoint=PATH "
                                  f"(CLI: --method-option checkpoint=PATH); the released weights: {FLOT_WEIGHTS}")
        if frame not in FRAMES:
            raise UnknownNameError(f"flot frame: expected one of {list(FRAMES)}, found {frame!r}")
        base.setdefault("max_points", 8192)
        super().__init__(**base)
        self.frame = frame
        self.net = load_flot(checkpoint, graph)
        self.net.requires_grad_(False)

    def _estimate(self, pc1, pc2, query):
        axes = list(FRAMES[self.frame])
        inverse = [axes.index(i) for i in range(3)]
        self.net.to(pc1.device)
        with torch.no_grad():
            out = self.net.flow(pc1[None][..., axes], pc2[None][..., axes])
        flow = out.flow[0][..., inverse]
        ot_flow = out.correspondences.flow[0][..., inverse]
        return EstimateOutput(flow=extend_to_points(pc1, flow, query),
                              extras={"ot_flow": extend_to_points(pc1, ot_flow, query).cpu().numpy()})
