"""Distance transform of a point cloud on a voxel grid, queried by trilinear interpolation (FNSF loss).

Fast Neural Scene Flow (``Lilac-Lee/FastNSF``, ``optimization.py: DT``) replaces the Chamfer kNN with a
lookup into a precomputed distance field of pc2: a voxel grid over the joint bounding box of pc1 and pc2
plus one cell on each side, 0.1 m cells, "occupied" = holds a pc2 point, distance in metres from every
cell centre to the nearest occupied cell centre, queried with ``F.grid_sample(mode="bilinear",
align_corners=True)``.

Deviation (documented): FNSF computes the field with FastGeodis' raster-scan *approximation*
(``generalised_geodesic3d``, ``lamb=0``, one iteration); here it is the **exact** Euclidean distance
transform (``scipy.ndimage.distance_transform_edt`` with ``sampling=voxel_size``), which needs no CUDA
extension.

Grid layout: node ``(i, j, k)`` sits at ``origin + (i, j, k) * voxel_size``; a point belongs to the
node it rounds to. ``origin = lo - padding * voxel_size`` and the node count per axis is
``round((hi - lo) / voxel_size) + 1 + 2 * padding`` (rounded up), where ``(lo, hi)`` is the box.

Outside the grid the field is extended as ``value(clamp(q)) + ||q - clamp(q)||`` (clamp to the grid
box, then add the Euclidean distance to the box): continuous, differentiable almost everywhere, and an
upper bound of the true distance up to the voxel discretisation, so far-away queries are pulled back.

Memory: the field is one float32 value per cell (4 bytes per cell), and the EDT needs about
24 bytes per cell while it runs (scipy's float64 output plus its int32 feature transform). Grids with
more than ``max_cells`` cells are refused with a :class:`~motionflow.errors.ShapeError` that states the
size; crop the clouds (``motionflow.sceneflow.preprocess.crop``) or use a coarser ``voxel_size``.
Time: the exact EDT runs at about 2 M cells per second on one CPU core.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ShapeError
from .neighbors import as_points

DEFAULT_MAX_CELLS = 72_000_000


def grid_shape(lo, hi, voxel_size: float, padding: int = 1) -> tuple:
    """Nodes per axis of the grid covering the box ``[lo, hi]`` (see the module docstring)."""
    ext = (np.asarray(hi, np.float64) - np.asarray(lo, np.float64)) / voxel_size
    return tuple(int(math.ceil(e - 1e-9)) + 1 + 2 * padding for e in ext)


def joint_bounds(*clouds: np.ndarray) -> tuple:
    """``(lo (3,), hi (3,))`` float64 box of the finite points of all ``clouds`` (FNSF's grid box before
    padding), or None when no cloud has a finite point."""
    pts = np.concatenate([np.asarray(c, np.float64).reshape(-1, 3) for c in clouds], 0)
    pts = pts[np.isfinite(pts).all(1)]
    return (pts.min(0), pts.max(0)) if len(pts) else None


class DistanceTransform(nn.Module):
    """Exact Euclidean distance field of ``points`` on a voxel grid (metres), with trilinear queries.

    Args:
        points: ``(M, 3)`` cloud whose distance field is built (FNSF: pc2).
        voxel_size: cell edge in metres (FNSF: 0.1, i.e. ``grid_factor=10``).
        bounds: ``(lo (3,), hi (3,))`` box the grid covers before padding. Default: the bounding box of
            ``points``. FNSF uses the joint box of pc1 and pc2: ``DistanceTransform.for_pair``.
        padding: extra cells on every side (FNSF: 1).
        max_cells: refuse grids with more cells than this (default 72 M: about 290 MB for the field,
            about 1.7 GB while the EDT runs; enough for OpenSceneFlow's 102.4 x 102.4 x 6 m range at 0.1 m).

    Attributes:
        field: ``(X, Y, Z)`` float32 tensor of distances in metres at the grid nodes.
        origin: ``(3,)`` float64 coordinates of node ``(0, 0, 0)``.
        shape: ``(X, Y, Z)``.
    """

    def __init__(self, points, voxel_size: float = 0.1, bounds: Optional[Sequence] = None, padding: int = 1,
                 max_cells: int = DEFAULT_MAX_CELLS):
        super().__init__()
        from scipy import ndimage

        pts = as_points(points, "points").detach().cpu().double().numpy()
        if len(pts) == 0:
            raise ShapeError("DistanceTransform points: expected at least one point, found 0")
        if not voxel_size > 0:
            raise ShapeError(f"DistanceTransform voxel_size: expected > 0, found {voxel_size}")
        if bounds is None:
            lo, hi = pts.min(0), pts.max(0)
        else:
            lo, hi = (np.asarray(b, np.float64).reshape(3) for b in bounds)
            if np.any(hi < lo):
                raise ShapeError(f"DistanceTransform bounds: expected lo <= hi, found lo={lo}, hi={hi}")
        shape = grid_shape(lo, hi, voxel_size, padding)
        cells = int(np.prod(shape, dtype=np.int64))
        if cells > max_cells:
            raise ShapeError(
                f"DistanceTransform: a {voxel_size} m grid over the box {np.round(lo, 2).tolist()} .. "
                f"{np.round(hi, 2).tolist()} has {shape[0]}x{shape[1]}x{shape[2]} = {cells:,} cells "
                f"(about {cells * 24 / 2**30:.1f} GiB while the EDT runs), above max_cells={max_cells:,}; "
                "crop the clouds (e.g. preprocess crop radius) or use a larger voxel_size"
            )
        self.voxel_size = float(voxel_size)
        self.padding = int(padding)
        self.origin = lo - padding * voxel_size
        self.shape = shape
        ijk = np.rint((pts - self.origin) / voxel_size).astype(np.int64)
        inside = np.all((ijk >= 0) & (ijk < np.asarray(shape)), axis=1)
        self.points_outside = int((~inside).sum())
        if not inside.any():
            raise ShapeError("DistanceTransform: no point of `points` lies inside `bounds`")
        ijk = ijk[inside]
        empty = np.ones(shape, dtype=bool)
        empty[ijk[:, 0], ijk[:, 1], ijk[:, 2]] = False
        dist = ndimage.distance_transform_edt(empty, sampling=voxel_size)
        self.register_buffer("field", torch.from_numpy(dist.astype(np.float32)), persistent=False)

    @classmethod
    def for_pair(cls, pc1, pc2, voxel_size: float = 0.1, padding: int = 1, max_cells: int = DEFAULT_MAX_CELLS):
        """FNSF's grid: distance field of ``pc2`` over the joint bounding box of ``pc1`` and ``pc2``."""
        a = as_points(pc1, "pc1").detach().cpu().double().numpy()
        b = as_points(pc2, "pc2").detach().cpu().double().numpy()
        return cls(b, voxel_size=voxel_size, bounds=joint_bounds(a, b), padding=padding, max_cells=max_cells)

    @property
    def nbytes(self) -> int:
        """Bytes held by the field."""
        return self.field.numel() * self.field.element_size()

    @property
    def upper(self) -> np.ndarray:
        """Coordinates of the last node ``(X-1, Y-1, Z-1)``."""
        return self.origin + (np.asarray(self.shape) - 1) * self.voxel_size

    def forward(self, query: torch.Tensor) -> torch.Tensor:
        """Distance (metres) at ``query (N, 3)`` points, trilinear between nodes; differentiable in ``query``.

        Returns ``(N,)`` in the query's dtype and device.
        """
        if not isinstance(query, torch.Tensor):
            query = as_points(query, "query")
        if query.ndim != 2 or query.shape[1] != 3:
            raise ShapeError(f"DistanceTransform query: expected shape (N, 3), found {tuple(query.shape)}")
        field = self.field.to(device=query.device, dtype=query.dtype)
        lo = torch.as_tensor(self.origin, dtype=query.dtype, device=query.device)
        hi = torch.as_tensor(self.upper, dtype=query.dtype, device=query.device)
        clamped = torch.maximum(torch.minimum(query, hi), lo)
        # normalised coordinates in [-1, 1] (align_corners=True: -1 and 1 are the first and last nodes)
        size = torch.as_tensor([s - 1 for s in self.shape], dtype=query.dtype, device=query.device).clamp_min(1)
        norm = (clamped - lo) / (self.voxel_size * size) * 2 - 1
        # grid_sample on (1, 1, X, Y, Z): the grid's last axis is ordered (Z, Y, X) = (W, H, D)
        grid = norm.flip(-1).reshape(1, 1, 1, -1, 3)
        inside = F.grid_sample(field[None, None], grid, mode="bilinear", padding_mode="border",
                               align_corners=True).reshape(-1)
        outside = query - clamped
        out2 = (outside * outside).sum(-1)
        extra = torch.where(out2 > 0, out2.clamp_min(1e-30).sqrt(), torch.zeros_like(out2))
        return inside + extra
