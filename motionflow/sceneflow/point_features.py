"""The learned point-feature network of FLOT (Puy et al., ECCV 2020), reused by SCOOP (Lang et al., CVPR 2023).

Official code: ``valeoai/FLOT`` (``flot/models/gconv.py: SetConv``, ``graph.py``, ``scene_flow.py``) and
``itailang/SCOOP`` (``models/gconv.py``, ``graph.py``, ``scoop.py``: the same three layers).

* **Graph.** Every cloud gets one directed k-NN graph (k = 32) that **includes the point itself**
  (column 0), shared by the three layers. The official code sorts float32 expanded-form squared distances
  ``|p|^2 + |q|^2 - 2 p.q`` (``graph="expanded"`` here); the default ``graph="kdtree"`` is an exact KD-tree
  search (:func:`motionflow.ops.neighbors.knn_indices`), which gives the same neighbour *sets* except where
  float32 rounding reorders two nearly equidistant points (about 0.15 % of the rows of a generic lidar
  cloud: a difference below the networks' own float32 noise).
* **SetConv** ``(c_in -> c_out)``: per edge ``(i, j)`` the input ``[h_j ; p_j - p_i]`` (the *neighbour's*
  feature and the relative position), three bias-free 1x1 convolutions (``fc1..3``), each followed by
  ``InstanceNorm2d(affine=True)`` over all ``k N`` edges of the cloud (``bn1..3``; biased variance,
  eps 1e-5, no running statistics, the same in training and evaluation) and LeakyReLU(0.1); then the
  maximum over the k neighbours.
* **Features** ``3 -> 32 -> 64 -> 128`` (``feat_conv1..3``; layer 1 reads the raw xyz as ``h``), 55,360
  weights, plus the two transport parameters ``epsilon`` and ``gamma`` (shape (1,),
  ``eps = exp(epsilon) + 0.03``, ``gamma = exp(gamma)``): :class:`PointFeatureNet`, 55,362 numbers with
  the official state-dict names.

**Checkpoints** (:func:`read_point_feature_checkpoint`, always ``torch.load(weights_only=True)``):

* SCOOP (``scripts/train_scoop.py``): ``{"args": argparse.Namespace, "model": 29 keys, "optimizer": ...,
  "scheduler": ...}``. The Namespace is allow-listed with ``torch.serialization.safe_globals``; nothing
  else is unpickled. ``nb_iter``, ``nb_neigh_cross_recon`` and ``linear_corr_conf`` (default 0) are read
  from it, as ``evaluate_scoop.py`` does.
* FLOT (``flot/pretrained_models/model_{2048,8192}.tar``): ``{"model": 58 keys, "nb_iter": 1}``: the 29
  feature keys first, then ``ref_conv1..3.*`` and ``fc.*`` (FLOT's refinement, :mod:`.flot`).
* a plain state dict (optionally ``module.``-prefixed), as ``motionflow train --model scoop`` writes
  ``model.pth``.

Keys are loaded through an explicit key map (:func:`load_point_features`): every model key must be filled,
every checkpoint key must be mapped or be one of the FLOT refinement keys dropped by name when only the
features are wanted, every shape must match; the load is ``strict=True``.
"""

from __future__ import annotations

import argparse
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, ShapeError, UnknownNameError
from ..ops.neighbors import knn_indices

GRAPH_METHODS = ("kdtree", "expanded")
#: neighbours per point in FLOT / SCOOP's feature graph (the point itself included)
GRAPH_K = 32
#: key prefixes of FLOT's refinement network: in FLOT files, absent from SCOOP's model
FLOT_REFINE_PREFIXES = ("ref_conv1.", "ref_conv2.", "ref_conv3.", "fc.")


def point_graph(points: torch.Tensor, k: int = GRAPH_K, method: str = "kdtree") -> torch.Tensor:
    """k-NN indices ``(B, N, k)`` of every point of ``points (B, N, 3)`` in its own cloud, itself included.

    Args:
        points: ``(B, N, 3)`` clouds (N >= k).
        k: neighbours (FLOT / SCOOP: 32, the point itself in column 0).
        method: ``"kdtree"`` (exact) or ``"expanded"``: the official float32 ``|p|^2 + |q|^2 - 2 p.q``
            (one ``(B, N, N)`` matrix) and the first k of ``torch.argsort``, which decides the set only
            where the k-th and (k+1)-th values are equal; elsewhere ``topk`` gives the same set faster.
            The order within a row is not the official one (the network ignores it).
    """
    if method not in GRAPH_METHODS:
        raise UnknownNameError(f"point_graph method: expected one of {GRAPH_METHODS}, found {method!r}")
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ShapeError(f"point_graph points: expected shape (B, N, 3), found {tuple(points.shape)}")
    if points.shape[1] < k:
        raise ShapeError(f"point_graph: k={k} needs at least {k} points per cloud, found {points.shape[1]}")
    if method == "kdtree":
        return torch.stack([knn_indices(p, p, k=k) for p in points.detach()])
    with torch.no_grad():  # one bmm over the whole cloud: the official values bit for bit
        d = (points ** 2).sum(-1, keepdim=True)
        d = d + d.transpose(1, 2)
        d = d - 2 * torch.bmm(points, points.transpose(1, 2))
        if points.shape[1] == k:
            return torch.argsort(d, dim=-1)
        values, idx = torch.topk(d, k + 1, dim=-1, largest=False, sorted=True)
        idx = idx[..., :k].clone()
        # only a tie across the k-th / (k+1)-th value makes the set depend on argsort's tie order
        for b, row in (values[..., k - 1] == values[..., k]).nonzero().tolist():
            idx[b, row] = torch.argsort(d[b, row])[:k]
    return idx


def edge_offsets(points: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Relative positions ``p_j - p_i`` of every edge, channel-first: ``(B, 3, N k)`` (the graph's edge features)."""
    b, n, k = edges.shape
    pts = points.transpose(1, 2)  # (B, 3, N)
    neighbours = torch.gather(pts, 2, edges.reshape(b, 1, n * k).expand(-1, 3, -1))
    return neighbours - pts.repeat_interleave(k, dim=2)


class SetConv(nn.Module):
    """FLOT's PointNet++-like convolution on a k-NN graph (official names ``fc1..3``, ``bn1..3``).

    ``forward(signal (B, c_in, N), offsets (B, 3, N k), edges (B, N, k)) -> (B, c_out, N)``, channel-first
    (``offsets`` from :func:`edge_offsets`), so that no layer copies its input into another layout.
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.fc1 = nn.Conv2d(c_in + 3, c_out, 1, bias=False)
        self.bn1 = nn.InstanceNorm2d(c_out, affine=True)
        self.fc2 = nn.Conv2d(c_out, c_out, 1, bias=False)
        self.bn2 = nn.InstanceNorm2d(c_out, affine=True)
        self.fc3 = nn.Conv2d(c_out, c_out, 1, bias=False)
        self.bn3 = nn.InstanceNorm2d(c_out, affine=True)

    def forward(self, signal: torch.Tensor, offsets: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        b, n, k = edges.shape
        if signal.shape[0] != b or signal.shape[2] != n or offsets.shape != (b, 3, n * k):
            raise ShapeError(f"SetConv: signal {tuple(signal.shape)} / offsets {tuple(offsets.shape)} do not match "
                             f"the graph {tuple(edges.shape)}")
        neighbours = torch.gather(signal, 2, edges.reshape(b, 1, n * k).expand(-1, signal.shape[1], -1))
        x = torch.cat([neighbours, offsets], 1)  # (B, c_in + 3, N k): [h_j ; p_j - p_i]
        for fc, norm in ((self.fc1, self.bn1), (self.fc2, self.bn2), (self.fc3, self.bn3)):
            x = torch.matmul(fc.weight.flatten(1), x)  # a 1x1 convolution
            x = F.leaky_relu_(F.instance_norm(x, weight=norm.weight, bias=norm.bias, eps=norm.eps), 0.1)
        return x.view(b, -1, n, k).amax(-1)


class PointFeatureNet(nn.Module):
    """FLOT / SCOOP's point-feature network with the learned transport parameters (29 official keys).

    ``forward(points (B, N, 3), edges=None) -> (features (B, N, 128), edges (B, N, 32))``.

    Attributes:
        gamma, epsilon: shape-(1,) parameters: ``transport_gamma() = exp(gamma)``,
            ``transport_eps() = exp(epsilon) + 0.03``.
        graph: ``"kdtree"`` or ``"expanded"`` (see :func:`point_graph`).
    """

    def __init__(self, channels: int = 32, graph: str = "kdtree"):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))
        self.epsilon = nn.Parameter(torch.zeros(1))
        self.feat_conv1 = SetConv(3, channels)
        self.feat_conv2 = SetConv(channels, 2 * channels)
        self.feat_conv3 = SetConv(2 * channels, 4 * channels)
        self.graph = graph

    def transport_eps(self) -> torch.Tensor:
        return torch.exp(self.epsilon) + 0.03

    def transport_gamma(self) -> torch.Tensor:
        return torch.exp(self.gamma)

    def forward(self, points: torch.Tensor, edges: Optional[torch.Tensor] = None):
        if edges is None:
            edges = point_graph(points, GRAPH_K, self.graph)
        offsets = edge_offsets(points, edges)
        x = self.feat_conv1(points.transpose(1, 2), offsets, edges)
        x = self.feat_conv2(x, offsets, edges)
        return self.feat_conv3(x, offsets, edges).transpose(1, 2), edges


@dataclass
class PointFeatureCheckpoint:
    """What :func:`read_point_feature_checkpoint` found.

    Attributes:
        path: the file.
        layout: ``"scoop"`` (``args`` + ``model``), ``"flot"`` (``model`` + ``nb_iter``) or ``"state_dict"``.
        state_dict: the weights (``module.`` prefix stripped).
        nb_iter: Sinkhorn iterations (SCOOP args / FLOT's ``nb_iter``; 1 for a plain state dict).
        nb_neigh_cross_recon: SCOOP's top-k (64; FLOT files: None, the full plan is used).
        linear_corr_conf: SCOOP's confidence mapping (False: ``max(0, .)``).
        args: SCOOP's training options as a dict (empty for the other layouts).
    """

    path: str
    layout: str
    state_dict: "OrderedDict[str, torch.Tensor]"
    nb_iter: int = 1
    nb_neigh_cross_recon: Optional[int] = 64
    linear_corr_conf: bool = False
    args: dict = field(default_factory=dict)


def _torch_file(path: Path):
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist (expected a SCOOP / FLOT .tar or a .pth file)")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a foreign pickle is refused here, before any of its objects is built
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise CheckpointError(
            f"checkpoint {str(path)!r}: expected a torch file with tensors (and SCOOP's argparse.Namespace); "
            f"torch.load(weights_only=True) refused it: {first}") from exc


def _flat_tensors(obj, path: Path, what: str) -> "OrderedDict[str, torch.Tensor]":
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                          for k, v in obj.items()):
        raise CheckpointError(f"checkpoint {str(path)!r}: expected {what} to be a state dict {{name: tensor}}, "
                              f"found {type(obj).__name__}")
    sd = OrderedDict(obj)
    if all(k.startswith("module.") for k in sd):
        sd = OrderedDict((k[len("module."):], v) for k, v in sd.items())
    return sd


def read_point_feature_checkpoint(path) -> PointFeatureCheckpoint:
    """Read a SCOOP, FLOT or plain checkpoint of the point-feature network (see the module docstring).

    Raises:
        CheckpointError: missing file, a file ``torch.load(weights_only=True)`` refuses (pickled objects
            other than ``argparse.Namespace``), or an unknown layout.
    """
    path = Path(path)
    raw = _torch_file(path)
    if isinstance(raw, Mapping) and isinstance(raw.get("args"), argparse.Namespace) and "model" in raw:
        args = vars(raw["args"])
        return PointFeatureCheckpoint(str(path), "scoop", _flat_tensors(raw["model"], path, "'model'"),
                                      nb_iter=int(args.get("nb_iter", 1)),
                                      nb_neigh_cross_recon=int(args.get("nb_neigh_cross_recon", 64)),
                                      linear_corr_conf=bool(args.get("linear_corr_conf", 0)), args=dict(args))
    if isinstance(raw, Mapping) and "model" in raw and "nb_iter" in raw:
        return PointFeatureCheckpoint(str(path), "flot", _flat_tensors(raw["model"], path, "'model'"),
                                      nb_iter=int(raw["nb_iter"]), nb_neigh_cross_recon=None)
    if isinstance(raw, Mapping) and "model" in raw:
        raise CheckpointError(f"checkpoint {str(path)!r}: a {{'model': ...}} file needs SCOOP's 'args' "
                              f"(argparse.Namespace) or FLOT's 'nb_iter'; found keys {sorted(map(str, raw))}")
    return PointFeatureCheckpoint(str(path), "state_dict", _flat_tensors(raw, path, "the file"))


def load_point_features(model: nn.Module, checkpoint: PointFeatureCheckpoint,
                        key_map: Optional[Mapping[str, str]] = None) -> nn.Module:
    """Copy ``checkpoint`` into ``model`` through an explicit key map, strictly.

    Args:
        model: a :class:`PointFeatureNet` (29 keys) or :class:`~motionflow.sceneflow.flot.FLOTNet` (58).
        checkpoint: from :func:`read_point_feature_checkpoint`.
        key_map: ``{checkpoint key: model key}``; default the identity over ``model.state_dict()``.
            Checkpoint keys outside the map are refused, except FLOT's refinement keys
            (:data:`FLOT_REFINE_PREFIXES`) when the model has none (SCOOP initialised from FLOT).

    Raises:
        CheckpointError: listing every missing, unexpected and mis-shaped key.
    """
    target = model.state_dict()
    key_map = dict(key_map) if key_map is not None else {k: k for k in target}
    bad_targets = sorted(set(key_map.values()) - set(target))
    sd = checkpoint.state_dict
    droppable = not any(k.startswith(FLOT_REFINE_PREFIXES) for k in target)
    unexpected = [k for k in sd if k not in key_map and not (droppable and k.startswith(FLOT_REFINE_PREFIXES))]
    missing = [ck for ck in key_map if ck not in sd]
    unfilled = sorted(set(target) - set(key_map.values()))
    shapes = [f"{ck}: checkpoint {tuple(sd[ck].shape)} vs model {tuple(target[mk].shape)}"
              for ck, mk in key_map.items() if ck in sd and mk in target and sd[ck].shape != target[mk].shape]
    problems = [f"{label} ({len(keys)}): {keys}" for label, keys in (
        ("key_map targets that are not model keys", bad_targets), ("missing keys", missing),
        ("model keys nothing maps to", unfilled), ("unexpected keys", unexpected), ("shape mismatches", shapes))
        if keys]
    if problems:
        raise CheckpointError(f"checkpoint {checkpoint.path!r} ({checkpoint.layout} layout) does not match "
                              f"{type(model).__name__}: " + "; ".join(problems))
    model.load_state_dict(OrderedDict((mk, sd[ck].to(target[mk].dtype)) for ck, mk in key_map.items()), strict=True)
    return model
