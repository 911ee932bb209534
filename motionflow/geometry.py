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

__all__ = ["as_transform", "apply_transform", "invert_transform", "compose_transforms", "ego_flow",
           "interpolate_transform", "rotation_angle"]


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


def rotation_angle(T) -> float:
    """Angle of the rotation of one rigid transform ``T (4, 4)`` (or of a ``(3, 3)`` rotation), in degrees."""
    R = np.asarray(T, dtype=np.float64)[:3, :3]
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0))))


def _skew(w: np.ndarray) -> np.ndarray:
    """``(..., 3)`` vectors -> ``(..., 3, 3)`` cross-product matrices ``[w]x``."""
    out = np.zeros(w.shape[:-1] + (3, 3))
    out[..., 0, 1], out[..., 0, 2], out[..., 1, 2] = -w[..., 2], w[..., 1], -w[..., 0]
    out[..., 1, 0], out[..., 2, 0], out[..., 2, 1] = w[..., 2], -w[..., 1], w[..., 0]
    return out


def interpolate_transform(T, s) -> np.ndarray:
    """The fraction ``s`` of the rigid motion ``T`` along its screw: ``exp(s log T)`` (SE(3)).

    ``s = 0`` gives the identity, ``s = 1`` gives ``T``, ``s = 0.5`` the motion that applied twice is ``T``;
    negative ``s`` runs backwards. This is the constant-velocity model of lidar deskewing (KISS-ICP):
    a sensor moving by ``T`` per sweep interval has moved by ``interpolate_transform(T, s)`` after the
    fraction ``s`` of it.

    Args:
        T: one ``(4, 4)`` rigid transform.
        s: a scalar or an ``(N,)`` array of fractions.

    Returns:
        ``(4, 4)`` for a scalar ``s``, else ``(N, 4, 4)`` (float64).
    """
    from scipy.spatial.transform import Rotation

    T = as_transform(T)
    if T.shape != (4, 4):
        raise ShapeError(f"interpolate_transform T: expected one (4, 4) transform, found shape {T.shape}")
    s_arr = np.asarray(s, dtype=np.float64)
    frac = s_arr.reshape(-1)
    w = Rotation.from_matrix(T[:3, :3]).as_rotvec()
    theta = float(np.linalg.norm(w))
    W = _skew(w)
    # log: translation part u with V(w) u = t, V = I + (1 - cos)/th^2 W + (th - sin)/th^3 W^2
    if theta < 1e-9:
        v = T[:3, 3] - 0.5 * W @ T[:3, 3]
    else:
        c = (1.0 - theta * np.sin(theta) / (2.0 * (1.0 - np.cos(theta)))) / theta ** 2
        v = (np.eye(3) - 0.5 * W + c * W @ W) @ T[:3, 3]
    ws = frac[:, None] * w
    th = np.abs(frac) * theta
    Ws = _skew(ws)
    small = th < 1e-9
    safe = np.where(small, 1.0, th)
    a = np.where(small, 0.5, (1.0 - np.cos(safe)) / safe ** 2)
    b = np.where(small, 1.0 / 6.0, (safe - np.sin(safe)) / safe ** 3)
    V = np.eye(3) + a[:, None, None] * Ws + b[:, None, None] * (Ws @ Ws)
    out = np.tile(np.eye(4), (len(frac), 1, 1))
    out[:, :3, :3] = Rotation.from_rotvec(ws).as_matrix()
    out[:, :3, 3] = np.einsum("nij,nj->ni", V, frac[:, None] * v)
    return out[0] if s_arr.ndim == 0 else out
