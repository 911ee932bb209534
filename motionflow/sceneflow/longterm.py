"""Long-term correspondence: chain per-pair scene flows through a lidar sequence.

Scene flow ``t -> t+1`` is defined on the points of sweep ``t``. To follow arbitrary points (e.g. sweep 0)
through the sequence, the flow of step ``t`` is interpolated at the points' current positions from the
flow of sweep ``t`` (inverse-distance weighting of the ``k`` nearest sweep points, or a fitted flow field
such as :class:`motionflow.sceneflow.nsfp.NeuralFlowField` evaluated directly), and the points move on.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Union

import numpy as np

from ..errors import ShapeError

FlowLike = Union[np.ndarray, Callable]


def interpolate_flow(points: np.ndarray, cloud: np.ndarray, flow: np.ndarray, k: int = 3,
                     max_distance: Optional[float] = None) -> np.ndarray:
    """Flow at ``points (P, 3)`` by inverse-distance weighting of the ``k`` nearest ``cloud`` points.

    Points farther than ``max_distance`` from every cloud point get NaN (None: no limit).
    """
    from scipy.spatial import cKDTree

    if cloud.shape != flow.shape or cloud.ndim != 2 or cloud.shape[1] != 3:
        raise ShapeError(f"interpolate_flow: expected cloud and flow of the same (N, 3) shape, found "
                         f"{cloud.shape} and {flow.shape}")
    k = min(k, len(cloud))
    dist, idx = cKDTree(cloud).query(points, k=k, workers=-1)
    dist = np.asarray(dist, dtype=np.float64).reshape(len(points), k)
    idx = np.asarray(idx).reshape(len(points), k)
    w = 1.0 / np.maximum(dist, 1e-6)
    w /= w.sum(1, keepdims=True)
    out = (w[..., None] * flow[idx]).sum(1)
    if max_distance is not None:
        out[dist[:, 0] > max_distance] = np.nan
    return out.astype(np.float32)


def propagate(points, flows: Sequence[FlowLike], clouds: Optional[Sequence[np.ndarray]] = None, k: int = 3,
              max_distance: Optional[float] = None) -> List[np.ndarray]:
    """Positions of ``points`` (in frame 0) in every later frame, by chaining per-pair flows.

    Args:
        points: ``(P, 3)`` points in the coordinates of sweep 0.
        flows: ``T`` flows; ``flows[t]`` is either an ``(N_t, 3)`` array on ``clouds[t]`` (frame t -> t+1)
            or a callable ``field(points (P, 3)) -> (P, 3)`` (e.g. a fitted NSFP field).
        clouds: ``T`` clouds ``(N_t, 3)``, needed where ``flows[t]`` is an array.
        k, max_distance: see :func:`interpolate_flow` (a point with no cloud point within
            ``max_distance`` becomes NaN and stays NaN).

    Returns:
        ``T + 1`` arrays ``(P, 3)``: the positions in frames 0 .. T (each in its own sweep's frame).
    """
    p = np.asarray(points, dtype=np.float32)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ShapeError(f"propagate points: expected shape (P, 3), found {p.shape}")
    if clouds is not None and len(clouds) != len(flows):
        raise ShapeError(f"propagate: expected one cloud per flow, found {len(clouds)} clouds and {len(flows)} flows")
    out = [p.copy()]
    for t, f in enumerate(flows):
        cur = out[-1]
        ok = np.isfinite(cur).all(1)
        step = np.full_like(cur, np.nan)
        if callable(f):
            import torch

            with torch.no_grad():
                v = f(torch.from_numpy(np.ascontiguousarray(cur[ok])))
            step[ok] = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
        else:
            if clouds is None:
                raise ShapeError(f"propagate: flows[{t}] is an array, so clouds= is required")
            step[ok] = interpolate_flow(cur[ok], np.asarray(clouds[t], np.float32), np.asarray(f, np.float32), k=k,
                                        max_distance=max_distance)
        out.append(cur + step)
    return out


def accumulate(clouds: Sequence[np.ndarray], flows: Optional[Sequence[np.ndarray]] = None, method: str = "icp",
               k: int = 3, progress: bool = False, **method_options):
    """Accumulate a dense cloud over a sequence of sweeps in the frame of the **last** sweep.

    Every sweep ``t`` is carried to the last frame by chaining the flows ``t -> t+1 -> ... -> T``. The
    flows are given (``flows[t]`` on ``clouds[t]``) or estimated between consecutive sweeps with the
    scene-flow ``method`` (default ``icp``: a static world moved by the ego motion, fast and good for
    accumulating a velodyne sequence; use ``nsfp``/``fnsf`` with ``compensate_ego=True`` for scenes with
    movers).

    Returns:
        ``(points (sum N_t, 3) float32, sweep index (sum N_t,) int)``.
    """
    clouds = [np.asarray(c, dtype=np.float32) for c in clouds]
    if len(clouds) < 1:
        raise ShapeError("accumulate: expected at least one cloud, found none")
    if flows is None:
        from ..registry import get_scene_flow_method

        est = get_scene_flow_method(method, **method_options)
        steps = range(len(clouds) - 1)
        if progress:
            from tqdm import tqdm

            steps = tqdm(steps, desc=f"accumulate ({method})")
        flows = [est(clouds[t], clouds[t + 1]).flow for t in steps]
    if len(flows) != len(clouds) - 1:
        raise ShapeError(f"accumulate: expected {len(clouds) - 1} flows for {len(clouds)} clouds, found {len(flows)}")
    pts, src = [], []
    for t, c in enumerate(clouds):
        # sweep t moves with its own flow first (exact, per point), then by interpolation
        cur = c + np.nan_to_num(flows[t]) if t < len(flows) else c
        if t + 1 < len(flows):
            cur = propagate(cur, flows[t + 1:], clouds[t + 1:-1], k=k)[-1]
        pts.append(cur)
        src.append(np.full(len(c), t))
    return np.concatenate(pts).astype(np.float32), np.concatenate(src)
