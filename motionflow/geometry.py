"""Rigid transforms in numpy: the one home of SE(3) apply / invert / compose and the ego-motion flow.

Datasets and evaluation read and score point clouds without torch; the scene-flow methods, the
synthetic data and :mod:`motionflow.ops.geometry` (the differentiable torch twins) all call these.

Conventions: an SE(3) transform is a ``(4, 4)`` homogeneous matrix (or a stack ``(..., 4, 4)``) that
maps points as ``p' = R p + t``. Points are ``(N, 3)`` (or ``(..., N, 3)``). Results keep the points'
floating dtype (float32 stays float32; the product is computed in float64 and rounded once, so a
float32 cloud moved by a float64 pose loses no more than one rounding).
"""

from __future__ import annotations

import numpy as np

from .errors import ShapeError

__all__ = ["as_transform", "apply_transform", "invert_transform", "compose_transforms", "ego_flow"]


def as_transform(T, name: str = "T") -> np.ndarray:
    """``T`` as a float64 ``(..., 4, 4)`` array; raises :class:`ShapeError` naming ``name`` otherwise."""
    arr = np.asarray(T, dtype=np.float64)
    if arr.ndim < 2 or arr.shape[-2:] != (4, 4):
        raise ShapeError(f"{name}: expected a (4, 4) rigid transform, found shape {arr.shape}")
    return arr


def _as_points(points, name: str) -> np.ndarray:
    arr = np.asarray(points)
    if arr.ndim < 2 or arr.shape[-1] != 3:
        raise ShapeError(f"{name}: expected (N, 3) points, found shape {arr.shape}")
    return arr


def apply_transform(points, T, name: str = "points") -> np.ndarray:
    """``R p + t`` for ``points (..., N, 3)`` and ``T (4, 4)`` (or ``(..., 4, 4)`` matching the points' batch)."""
    p = _as_points(points, name)
    T = as_transform(T)
    out = p.astype(np.float64) @ np.swapaxes(T[..., :3, :3], -1, -2) + T[..., None, :3, 3]
    return out.astype(p.dtype if np.issubdtype(p.dtype, np.floating) else np.float64)


def invert_transform(T) -> np.ndarray:
    """Inverse of a rigid transform, ``[R^T, -R^T t]`` (exact for rotations; no general matrix inverse)."""
    T = as_transform(T)
    R_t = np.swapaxes(T[..., :3, :3], -1, -2)
    out = np.zeros_like(T)
    out[..., :3, :3] = R_t
    out[..., :3, 3] = -(R_t @ T[..., :3, 3:])[..., 0]
    out[..., 3, 3] = 1.0
    return out


def compose_transforms(*Ts) -> np.ndarray:
    """``T1 @ T2 @ ... @ Tn``: applying the result equals applying ``Tn`` first and ``T1`` last."""
    if not Ts:
        raise ShapeError("compose_transforms: expected at least one transform, found none")
    out = as_transform(Ts[0], "T1")
    for i, T in enumerate(Ts[1:], start=2):
        out = out @ as_transform(T, f"T{i}")
    return out


def ego_flow(points, T, name: str = "points") -> np.ndarray:
    """Flow of static points under the ego motion ``T`` (pc1's frame -> pc2's frame): ``T p - p``.

    Computed in float64 and returned in the points' float dtype, so the rounding matches
    ``apply_transform(p, T) - p`` done in float64 (the av2-api ``Flow.from_sweep_pair`` convention).
    """
    p = _as_points(points, name)
    T = as_transform(T)
    p64 = p.astype(np.float64)
    out = p64 @ np.swapaxes(T[..., :3, :3], -1, -2) + T[..., None, :3, 3] - p64
    return out.astype(p.dtype if np.issubdtype(p.dtype, np.floating) else np.float64)
