"""Lidar preprocessing for scene flow: filtering, range crop, ground removal, subsampling.

Every step returns a **boolean keep-mask over the caller's points** (never a re-indexed array), and
:func:`preprocess_pair` combines them and reports how many points each step removed. The flow estimated
on the kept points is put back on the caller's pc1 with :meth:`Preprocessed.scatter`: removed points get
NaN (default) or a documented fill, so ``result.flow[i]`` always belongs to the caller's ``pc1[i]``.

Steps (applied in this order, to each cloud independently):

1. ``finite``: drop points with NaN/inf coordinates;
2. ``duplicates``: drop exact repeats of an earlier point (optional);
3. ``crop``: keep an axis-aligned box ``(xmin, ymin, zmin, xmax, ymax, zmax)`` and/or ``radius`` (xy
   distance from the origin of the cloud's frame);
4. ``ground``: remove ground by a height threshold (``z <= height``, in the cloud's frame) or by a RANSAC
   plane (open3d ``segment_plane``; points within ``distance`` of the plane);
5. ``subsample``: at most ``max_points`` points, ``random`` (seeded, without replacement) or ``voxel``
   (one point per occupied voxel: the first in input order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from ..errors import ShapeError, UnknownNameError, require_open3d

FILLS = ("nan", "zero", "nearest", "rigid")


def _np(points, name: str) -> np.ndarray:
    a = points.detach().cpu().numpy() if hasattr(points, "detach") else np.asarray(points)
    if a.ndim != 2 or a.shape[1] != 3:
        raise ShapeError(f"{name}: expected shape (N, 3), found {a.shape}")
    return a


def finite_mask(points) -> np.ndarray:
    """True where all three coordinates are finite."""
    return np.isfinite(_np(points, "points")).all(axis=1)


def duplicate_mask(points) -> np.ndarray:
    """True for the first occurrence of every distinct point, False for exact repeats."""
    a = _np(points, "points")
    keep = np.zeros(len(a), dtype=bool)
    if len(a):
        _, first = np.unique(np.ascontiguousarray(a), axis=0, return_index=True)
        keep[first] = True
    return keep


def crop_mask(points, box: Optional[Sequence[float]] = None, radius: Optional[float] = None) -> np.ndarray:
    """True inside ``box = (xmin, ymin, zmin, xmax, ymax, zmax)`` (inclusive) and within ``radius`` (xy)."""
    a = _np(points, "points")
    keep = np.ones(len(a), dtype=bool)
    if box is not None:
        b = np.asarray(box, dtype=np.float64).reshape(-1)
        if b.shape != (6,) or np.any(b[3:] < b[:3]):
            raise ShapeError(f"crop box: expected (xmin, ymin, zmin, xmax, ymax, zmax) with min <= max, found {box}")
        with np.errstate(invalid="ignore"):
            keep &= np.all((a >= b[:3]) & (a <= b[3:]), axis=1)
    if radius is not None:
        if not radius > 0:
            raise ShapeError(f"crop radius: expected > 0, found {radius}")
        with np.errstate(invalid="ignore"):
            keep &= (a[:, 0] ** 2 + a[:, 1] ** 2) <= radius ** 2
    return keep


def square_box(half_size: float, zmin: float = -np.inf, zmax: float = np.inf) -> tuple:
    """The AV2-style xy square crop ``|x| <= s, |y| <= s`` as a box (e.g. 35 m: the "close" region)."""
    return (-half_size, -half_size, zmin, half_size, half_size, zmax)


def ground_mask_height(points, height: float) -> np.ndarray:
    """True for ground points: ``z <= height`` (frame-dependent: AV2 ego ~0.3, KITTI velodyne ~-1.4)."""
    a = _np(points, "points")
    with np.errstate(invalid="ignore"):
        return a[:, 2] <= height


def ground_mask_ransac(points, distance: float = 0.2, iterations: int = 1000, seed: int = 0,
                       max_tilt_deg: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    """Ground by a RANSAC plane (open3d ``segment_plane``).

    Args:
        distance: inlier distance to the plane in metres.
        iterations: RANSAC iterations.
        seed: open3d's RANSAC seed (deterministic).
        max_tilt_deg: refuse a plane whose normal is tilted more than this from z (a wall, not ground).

    Returns:
        ``(ground mask (N,), plane (4,) a, b, c, d with ax + by + cz + d = 0)``.
    """
    o3d = require_open3d()
    a = _np(points, "points")
    ok = np.isfinite(a).all(1)
    if ok.sum() < 3:
        raise ShapeError(f"ground ransac: expected at least 3 finite points, found {int(ok.sum())}")
    o3d.utility.random.seed(int(seed))
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(a[ok].astype(np.float64)))
    plane, _ = pc.segment_plane(distance_threshold=distance, ransac_n=3, num_iterations=iterations)
    plane = np.asarray(plane, dtype=np.float64)
    normal = plane[:3] / np.linalg.norm(plane[:3])
    tilt = np.degrees(np.arccos(min(1.0, abs(normal[2]))))
    if tilt > max_tilt_deg:
        raise ShapeError(f"ground ransac: the dominant plane is tilted {tilt:.1f} deg from horizontal "
                         f"(max_tilt_deg={max_tilt_deg}); use a height threshold or crop first")
    dist = np.full(len(a), np.inf)
    dist[ok] = plane_distance(a[ok], plane)
    return dist <= distance, plane


def ground_plane(points, distance: float = 0.2, max_points: int = 20000, seed: int = 0) -> Optional[tuple]:
    """The ground of a driving sweep: the dominant plane among the **lower half** of its points.

    Walls, roofs and car tops out-vote the ground in the full cloud, so the RANSAC plane
    (:func:`ground_mask_ransac`) is fitted on the points below the median height of at most ``max_points``
    random points (seeded). Returns ``(plane (4,), share)``: the plane ``ax + by + cz + d = 0`` and the
    share of that lower half within ``distance`` of it; None when there is no horizontal dominant plane.
    """
    a = _np(points, "points")
    a = a[np.isfinite(a).all(1)]
    if len(a) > max_points:
        a = a[np.random.default_rng(seed).choice(len(a), max_points, replace=False)]
    low = a[a[:, 2] <= np.median(a[:, 2])] if len(a) else a
    try:
        inliers, plane = ground_mask_ransac(low, distance=distance, seed=seed)
    except ShapeError:  # no horizontal dominant plane (a tiny or wall-only cloud)
        return None
    return plane, float(inliers.mean())


def plane_distance(points, plane) -> np.ndarray:
    """Distance of each of ``points (N, 3)`` to the plane ``(a, b, c, d)`` (``ax + by + cz + d = 0``)."""
    plane = np.asarray(plane, dtype=np.float64)
    return np.abs(_np(points, "points") @ plane[:3] + plane[3]) / np.linalg.norm(plane[:3])


def subsample_mask(points, max_points: int, method: str = "random", seed: int = 0,
                   voxel_size: Optional[float] = None) -> np.ndarray:
    """Keep at most ``max_points`` points: ``random`` (seeded) or ``voxel`` (first point per voxel of
    ``voxel_size``, then random down to ``max_points`` if still above)."""
    a = _np(points, "points")
    keep = np.ones(len(a), dtype=bool)
    rng = np.random.default_rng(seed)
    if method == "voxel":
        if voxel_size is None or not voxel_size > 0:
            raise ShapeError(f"subsample voxel: expected voxel_size > 0, found {voxel_size}")
        _, first = np.unique(np.floor(a / voxel_size).astype(np.int64), axis=0, return_index=True)
        keep[:] = False
        keep[first] = True
    elif method != "random":
        raise UnknownNameError(f"subsample method: expected 'random' or 'voxel', found {method!r}")
    idx = np.flatnonzero(keep)
    if max_points is not None and len(idx) > max_points:
        keep[:] = False
        keep[rng.choice(idx, size=int(max_points), replace=False)] = True
    return keep


@dataclass
class Preprocessed:
    """Result of :func:`preprocess_pair`.

    Attributes:
        pc1, pc2: the kept points ``(n, 3)`` / ``(m, 3)`` float32 (in input order).
        keep1, keep2: bool masks over the caller's clouds.
        removed: per cloud, ``{step: number of points that step removed}``.
        ground1, ground2: bool masks of points classified as ground (over the caller's clouds), or None.
    """

    pc1: np.ndarray
    pc2: np.ndarray
    keep1: np.ndarray
    keep2: np.ndarray
    removed: dict = field(default_factory=dict)
    ground1: Optional[np.ndarray] = None
    ground2: Optional[np.ndarray] = None

    def scatter(self, flow, fill: str = "nan", points=None, transform=None) -> np.ndarray:
        """Put the flow of the kept pc1 points back on the caller's pc1 ``(N, 3)``.

        Args:
            flow: ``(n, 3)`` flow on :attr:`pc1`.
            fill: value for removed points: ``"nan"``; ``"zero"``; ``"nearest"`` (flow of the nearest kept
                pc1 point; needs ``points``, the caller's pc1); ``"rigid"`` (``transform @ p - p``, e.g.
                the ego motion for removed ground; needs ``points`` and ``transform``). Non-finite points
                stay NaN whatever the fill.
        """
        f = flow.detach().cpu().numpy() if hasattr(flow, "detach") else np.asarray(flow)
        n_kept = int(self.keep1.sum())
        if f.shape != (n_kept, 3):
            raise ShapeError(f"scatter flow: expected shape ({n_kept}, 3), found {f.shape}")
        if fill not in FILLS:
            raise UnknownNameError(f"scatter fill: expected one of {FILLS}, found {fill!r}")
        out = np.full((len(self.keep1), 3), np.nan, dtype=np.float32)
        out[self.keep1] = f
        missing = ~self.keep1
        if fill != "nan" and missing.any():
            if fill == "zero":
                if points is not None:
                    missing &= np.isfinite(_np(points, "points")).all(1)
                out[missing] = 0
            else:
                if points is None:
                    raise ShapeError(f"scatter fill={fill!r}: pass points= (the caller's pc1)")
                p = _np(points, "points")
                fin = np.isfinite(p).all(1)
                target = missing & fin
                if fill == "nearest" and n_kept:
                    from scipy.spatial import cKDTree

                    _, idx = cKDTree(self.pc1).query(p[target], k=1, workers=-1)
                    out[target] = f[idx]
                elif fill == "rigid":
                    if transform is None:
                        raise ShapeError("scatter fill='rigid': pass transform= (4, 4)")
                    from ..geometry import ego_flow

                    out[target] = ego_flow(p[target].astype(np.float64), transform).astype(np.float32)
        return out


def _steps(points, name, *, remove_duplicates, box, radius, ground, ground_height, ground_distance,
           max_points, subsample, voxel_size, seed):
    a = _np(points, name)
    keep = np.ones(len(a), dtype=bool)
    removed = {}
    ground_flags = None

    def apply(step, mask):
        nonlocal keep
        new = keep & mask
        removed[step] = int(keep.sum() - new.sum())
        keep = new

    apply("nonfinite", finite_mask(a))
    if remove_duplicates:
        apply("duplicates", duplicate_mask(np.where(keep[:, None], a, np.nan)) | ~keep)
    if box is not None or radius is not None:
        apply("crop", crop_mask(a, box=box, radius=radius))
    if ground is not None:
        if ground == "height":
            ground_flags = ground_mask_height(a, ground_height) & keep
        elif ground == "ransac":
            sub = np.where(keep[:, None], a, np.nan)
            ground_flags, _ = ground_mask_ransac(sub, distance=ground_distance, seed=seed)
            ground_flags &= keep
        else:
            raise UnknownNameError(f"ground: expected 'height', 'ransac' or None, found {ground!r}")
        apply("ground", ~ground_flags)
    if max_points is not None and keep.sum() > max_points:
        idx = np.flatnonzero(keep)
        sub = subsample_mask(a[idx], max_points, method=subsample, seed=seed, voxel_size=voxel_size)
        mask = np.zeros(len(a), dtype=bool)
        mask[idx[sub]] = True
        apply("subsample", mask)
    return keep, removed, ground_flags


def preprocess_pair(pc1, pc2, *, remove_duplicates: bool = False, box: Optional[Sequence[float]] = None,
                    radius: Optional[float] = None, ground: Optional[str] = None, ground_height: float = 0.3,
                    ground_distance: float = 0.2, max_points: Optional[int] = None, subsample: str = "random",
                    voxel_size: Optional[float] = None, seed: int = 0) -> Preprocessed:
    """Filter both clouds (see the module docstring) and report what each step removed.

    Args:
        remove_duplicates: drop exact repeated points.
        box: crop box ``(xmin, ymin, zmin, xmax, ymax, zmax)``; see :func:`square_box`.
        radius: crop radius in the xy plane.
        ground: None, ``"height"`` (``z <= ground_height``) or ``"ransac"`` (plane, ``ground_distance``).
        max_points, subsample, voxel_size: optional subsampling of each cloud (removed pc1 points get
            the ``scatter`` fill, so use the methods' ``max_points`` instead to get flow everywhere).
        seed: seed of RANSAC and random subsampling.
    """
    opts = dict(remove_duplicates=remove_duplicates, box=box, radius=radius, ground=ground,
                ground_height=ground_height, ground_distance=ground_distance, max_points=max_points,
                subsample=subsample, voxel_size=voxel_size, seed=seed)
    a = _np(pc1, "pc1")
    b = _np(pc2, "pc2")
    k1, r1, g1 = _steps(a, "pc1", **opts)
    k2, r2, g2 = _steps(b, "pc2", **opts)
    if not k1.any() or not k2.any():
        raise ShapeError(f"preprocess: no points left (pc1 kept {int(k1.sum())}, pc2 kept {int(k2.sum())}); "
                         f"removed per step: pc1 {r1}, pc2 {r2}")
    return Preprocessed(pc1=a[k1].astype(np.float32), pc2=b[k2].astype(np.float32), keep1=k1, keep2=k2,
                        removed={"pc1": r1, "pc2": r2}, ground1=g1, ground2=g2)
