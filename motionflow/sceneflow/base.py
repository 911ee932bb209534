"""The scene-flow method protocol and the machinery every method shares.

A method object has ``name`` and ``__call__(pc1, pc2, ego_motion=None) -> SceneFlowResult``. The base class
:class:`SceneFlowMethod` does the common work around a method's own ``_estimate``:

1. input checks (``(N, 3)`` finite clouds, numpy or torch) and the device;
2. **ego-motion compensation** (``compensate_ego=True``): the ego motion ``T`` (pc1 frame -> pc2 frame)
   is taken from the call (``ego_motion=``), the constructor, or estimated
   (:func:`motionflow.sceneflow.ego.estimate_ego_motion`; ``extras["ego"]`` says which, with the
   estimate's fitness and whether the sweeps were deskewed); pc1 is moved by ``T`` and the method
   estimates the residual; the returned flow is ``ego_flow + residual`` (so it always lives in the
   caller's frames, exactly like an uncompensated estimate);
3. **subsampling for the fit** (``max_points=N``): the method fits on at most N random points of each
   cloud (independent draws, as NSFP) and returns flow for **every** pc1 point (neural fields are
   evaluated at all points; per-point methods extend their flow to the other points by their nearest
   fitted point);
4. seeding (``seed``, without touching the global RNG state), timing, and the result object.

Subclasses (``rigid`` in ``motionflow.sceneflow.rigid`` builds on this) implement::

    def _estimate(self, pc1: Tensor (n, 3), pc2: Tensor (m, 3), query: Tensor (N, 3)) -> EstimateOutput

where ``pc1`` / ``pc2`` are the (compensated, subsampled) fit clouds on ``self.device`` and ``query`` is
the full (compensated) pc1, and return the residual flow at ``query``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from ..errors import ShapeError
from ..ops.geometry import apply_transform
from ..ops.neighbors import as_points, knn_indices
from ..types import SceneFlowResult


@dataclass
class EstimateOutput:
    """What ``_estimate`` returns: the flow at the query points plus optimisation facts."""

    flow: torch.Tensor
    iterations: int = 0
    loss_trace: list = field(default_factory=list)
    converged: bool = True
    extras: dict = field(default_factory=dict)


def resolve_device(device) -> torch.device:
    """``None``/``"auto"`` -> CUDA when available, else CPU; anything else -> ``torch.device(device)``."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def random_subset(n: int, max_points: Optional[int], generator: torch.Generator) -> Optional[torch.Tensor]:
    """Indices of ``max_points`` points drawn without replacement (sorted), or None to keep all."""
    if max_points is None or n <= max_points:
        return None
    return torch.randperm(n, generator=generator)[:max_points].sort().values


def extend_to_points(fit_points: torch.Tensor, fit_flow: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """Flow at ``query`` copied from the nearest fit point (used when a method's flow is per point)."""
    if fit_points.shape[0] == query.shape[0] and torch.equal(fit_points, query):
        return fit_flow
    idx = knn_indices(query, fit_points, k=1)[:, 0]
    return fit_flow[idx]


class SceneFlowMethod:
    """Base class of scene-flow methods (see the module docstring).

    Args:
        compensate_ego: estimate the flow after moving pc1 by the ego motion (flow = ego + residual).
        ego_motion: ``(4, 4)`` pc1 -> pc2 transform to use when compensating (default: estimate it).
        max_points: fit on at most this many points per cloud; flow is returned for every pc1 point.
        seed: seed of the subsampling and of the method's own randomness (network initialisation).
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` (default ``"cpu"``).
        progress: show a tqdm bar for iterative methods.
        ego_options: keyword options of :func:`motionflow.sceneflow.ego.estimate_ego_motion`.
        num_threads: torch CPU threads while the method runs (restored afterwards); None leaves
            torch's setting. On a busy machine 1 thread can be much faster than an oversubscribed 2.
    """

    name = "base"
    #: the base class draws the ``max_points`` fit subsample; False: the method applies ``max_points``
    #: itself and ``_estimate`` gets the full clouds (the rigid methods cluster on a voxel subsample)
    subsample_fit = True

    def __init__(self, compensate_ego: bool = False, ego_motion=None, max_points: Optional[int] = None,
                 seed: int = 0, device="cpu", progress: bool = False, ego_options: Optional[dict] = None,
                 num_threads: Optional[int] = None):
        if max_points is not None and int(max_points) < 1:
            raise ShapeError(f"{self.name} max_points: expected a positive integer or None, found {max_points}")
        self.compensate_ego = bool(compensate_ego)
        self.ego_motion = None if ego_motion is None else np.asarray(ego_motion, dtype=np.float64)
        self.max_points = None if max_points is None else int(max_points)
        self.seed = int(seed)
        self.device = resolve_device(device)
        self.progress = bool(progress)
        self.ego_options = dict(ego_options or {})
        self.num_threads = None if num_threads is None else int(num_threads)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, device={str(self.device)!r})"

    def describe(self) -> dict:
        """What makes this method's numbers: its name and options (the public attributes; arrays, tensors and
        networks left out, the given ego motion as a list), so a re-configured object describes differently."""
        skip = (np.ndarray, torch.Tensor, torch.nn.Module)
        options = {k: v for k, v in sorted(vars(self).items()) if not k.startswith("_") and not isinstance(v, skip)}
        return {"method": self.name, **options, "ego_motion": None if self.ego_motion is None else self.ego_motion.tolist()}

    # -- the part subclasses write --------------------------------------------------------------
    def _estimate(self, pc1: torch.Tensor, pc2: torch.Tensor, query: torch.Tensor) -> EstimateOutput:
        raise NotImplementedError(f"{type(self).__name__} must implement _estimate")

    # -- shared machinery ------------------------------------------------------------------------
    def _ego(self, pc1_np: np.ndarray, pc2_np: np.ndarray, ego_motion) -> tuple[Optional[np.ndarray], Optional[dict]]:
        """The ego motion ``(T (4, 4) or None, how it was obtained)``: given, or estimated."""
        T = ego_motion if ego_motion is not None else self.ego_motion
        if T is not None:
            T = np.asarray(T, dtype=np.float64)
            if T.shape != (4, 4):
                raise ShapeError(f"{self.name} ego_motion: expected a (4, 4) transform, found {T.shape}")
            return T, {"source": "given"}
        if not self.compensate_ego:
            return None, None
        from .ego import estimate_ego_motion

        est = estimate_ego_motion(pc1_np, pc2_np, **self.ego_options)
        return est.transform, {"source": "estimated", "fitness": est.fitness, "inlier_rmse": est.inlier_rmse,
                               "deskewed": est.deskewed}

    def __call__(self, pc1, pc2, ego_motion=None) -> SceneFlowResult:
        if self.num_threads is None:
            return self._call(pc1, pc2, ego_motion)
        before = torch.get_num_threads()
        torch.set_num_threads(self.num_threads)
        try:
            return self._call(pc1, pc2, ego_motion)
        finally:
            torch.set_num_threads(before)

    def _call(self, pc1, pc2, ego_motion) -> SceneFlowResult:
        start = time.perf_counter()
        p1 = as_points(pc1, "pc1").detach()
        p2 = as_points(pc2, "pc2").detach()
        if p1.shape[0] == 0 or p2.shape[0] == 0:
            raise ShapeError(f"{self.name}: both clouds need points, found pc1={p1.shape[0]}, pc2={p2.shape[0]}")
        p1 = p1.to(self.device, torch.float32)
        p2 = p2.to(self.device, torch.float32)
        extras: dict = {}
        T = None
        if self.compensate_ego:
            T, extras["ego"] = self._ego(p1.cpu().numpy(), p2.cpu().numpy(), ego_motion)
            extras["ego_motion"] = T
        query = p1
        if T is not None:
            query = apply_transform(p1, torch.as_tensor(T, dtype=torch.float32, device=self.device))
        gen = torch.Generator().manual_seed(self.seed)
        budget = self.max_points if self.subsample_fit else None
        i1 = random_subset(query.shape[0], budget, gen)
        i2 = random_subset(p2.shape[0], budget, gen)
        fit1 = query if i1 is None else query[i1.to(self.device)]
        fit2 = p2 if i2 is None else p2[i2.to(self.device)]
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.seed)
            out = self._estimate(fit1, fit2, query)
        flow = out.flow.detach()
        if flow.shape != query.shape:
            raise ShapeError(f"{self.name}: internal error, flow shape {tuple(flow.shape)} != {tuple(query.shape)}")
        if T is not None:
            flow = flow + (query - p1)
        extras.update(out.extras)
        if i1 is not None:
            extras["fit_points"] = int(fit1.shape[0])
        return SceneFlowResult(
            flow=flow.float().cpu().numpy(),
            iterations=int(out.iterations),
            loss_trace=[float(v) for v in out.loss_trace],
            converged=bool(out.converged),
            seconds=time.perf_counter() - start,
            method=self.name,
            extras=extras,
        )
