"""Rigid transforms, ego-motion flow and pinhole camera geometry (torch, differentiable; numpy accepted).

Conventions: an SE(3) transform is a ``(4, 4)`` (or batched ``(..., 4, 4)``) homogeneous matrix that maps
points as ``p' = R p + t``. Camera intrinsics ``K`` are ``(3, 3)`` ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``;
camera coordinates are x right, y down, z forward (depth); pixel ``(u, v)`` = (column, row).

Every function returns a torch tensor; numpy inputs become float64 tensors when they are float64 and
float32 otherwise. The SE(3) functions are the tensor face of :mod:`motionflow.geometry` (the numpy home
of rigid transforms): all-numpy arguments are computed there (float64, rounded once) and wrapped; tensor
arguments take the same formula in torch, so gradients flow and the device is kept.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import geometry as core
from ..errors import ShapeError


def _t(x, name: str, like: torch.Tensor | None = None) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(x if x.dtype == np.float64 else x.astype(np.float32)))
    elif isinstance(x, torch.Tensor):
        t = x if x.is_floating_point() else x.float()
    else:
        raise ShapeError(f"{name}: expected a numpy array or torch tensor, found {type(x).__name__}")
    if like is not None:
        t = t.to(device=like.device, dtype=like.dtype)
    return t


def _check_se3(T: torch.Tensor, name: str) -> None:
    if T.ndim < 2 or tuple(T.shape[-2:]) != (4, 4):
        raise ShapeError(f"{name}: expected a (..., 4, 4) transform, found {tuple(T.shape)}")


def _check_points(p: torch.Tensor, name: str) -> None:
    if p.ndim < 2 or p.shape[-1] != 3:
        raise ShapeError(f"{name}: expected (..., N, 3) points, found {tuple(p.shape)}")


def _numpy_args(*args) -> bool:
    return not any(isinstance(a, torch.Tensor) for a in args)


def _wrap(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr if arr.dtype == np.float64 else arr.astype(np.float32)))


def apply_transform(points, T) -> torch.Tensor:
    """``R p + t`` for ``points (..., N, 3)`` and ``T (..., 4, 4)``."""
    if _numpy_args(points, T):
        return _wrap(core.apply_transform(points, T))
    p = _t(points, "points")
    _check_points(p, "points")
    T = _t(T, "T", like=p)
    _check_se3(T, "T")
    return p @ T[..., :3, :3].transpose(-1, -2) + T[..., None, :3, 3]


def invert_transform(T) -> torch.Tensor:
    """Inverse of a rigid transform: ``[R^T, -R^T t]`` (exact for rotations, no general inverse)."""
    if _numpy_args(T):
        return _wrap(core.invert_transform(T))
    T = _t(T, "T")
    _check_se3(T, "T")
    R = T[..., :3, :3]
    t = T[..., :3, 3:]
    out = torch.zeros_like(T)
    out[..., :3, :3] = R.transpose(-1, -2)
    out[..., :3, 3:] = -R.transpose(-1, -2) @ t
    out[..., 3, 3] = 1
    return out


def compose_transforms(*Ts) -> torch.Tensor:
    """``T1 @ T2 @ ... @ Tn``: applying the result equals applying ``Tn`` first and ``T1`` last."""
    if not Ts:
        raise ShapeError("compose_transforms: expected at least one transform, found none")
    if _numpy_args(*Ts):
        return _wrap(core.compose_transforms(*Ts))
    out = _t(Ts[0], "T1")
    _check_se3(out, "T1")
    for i, T in enumerate(Ts[1:], start=2):
        T = _t(T, f"T{i}", like=out)
        _check_se3(T, f"T{i}")
        out = out @ T
    return out


def ego_flow(points, T) -> torch.Tensor:
    """Flow of static points under the ego motion ``T`` (pc1 frame -> pc2 frame): ``T p - p``."""
    if _numpy_args(points, T):
        return _wrap(core.ego_flow(points, T))
    p = _t(points, "points")
    return apply_transform(p, T) - p


def _check_K(K: torch.Tensor) -> None:
    if tuple(K.shape[-2:]) != (3, 3):
        raise ShapeError(f"K: expected (3, 3) intrinsics, found {tuple(K.shape)}")


def project_points(points, K, eps: float = 1e-6):
    """Pinhole projection of camera-frame ``points (N, 3)``.

    Returns:
        ``(uv (N, 2), depth (N,))``; points with ``z <= eps`` get NaN pixel coordinates.
    """
    p = _t(points, "points")
    _check_points(p, "points")
    K = _t(K, "K", like=p)
    _check_K(K)
    z = p[..., 2]
    ok = z > eps
    zs = torch.where(ok, z, torch.ones_like(z))
    u = K[..., 0, 0, None] * p[..., 0] / zs + K[..., 0, 2, None]
    v = K[..., 1, 1, None] * p[..., 1] / zs + K[..., 1, 2, None]
    uv = torch.stack([u, v], -1)
    uv = torch.where(ok[..., None], uv, torch.full_like(uv, float("nan")))
    return uv, z


def scene_flow_to_optical_flow(points, flow, K) -> torch.Tensor:
    """Optical flow ``(N, 2)`` (pixels, x then y) induced by moving camera-frame ``points`` by ``flow``:
    ``project(p + flow) - project(p)``. NaN where either end is behind the camera."""
    p = _t(points, "points")
    f = _t(flow, "flow", like=p)
    if f.shape != p.shape:
        raise ShapeError(f"flow: expected shape {tuple(p.shape)} like points, found {tuple(f.shape)}")
    uv0, _ = project_points(p, K)
    uv1, _ = project_points(p + f, K)
    return uv1 - uv0


def backproject_depth(depth, K) -> torch.Tensor:
    """Camera-frame points ``(H, W, 3)`` from a depth map ``(H, W)`` (metres along z).

    Pixel ``(u, v)`` maps to ``z * K^-1 [u, v, 1]``; non-finite or non-positive depth gives NaN points.
    """
    d = _t(depth, "depth")
    if d.ndim != 2:
        raise ShapeError(f"depth: expected shape (H, W), found {tuple(d.shape)}")
    K = _t(K, "K", like=d)
    _check_K(K)
    h, w = d.shape
    v, u = torch.meshgrid(torch.arange(h, dtype=d.dtype, device=d.device),
                          torch.arange(w, dtype=d.dtype, device=d.device), indexing="ij")
    x = (u - K[0, 2]) / K[0, 0] * d
    y = (v - K[1, 2]) / K[1, 1] * d
    pts = torch.stack([x, y, d], -1)
    bad = ~(torch.isfinite(d) & (d > 0))
    return torch.where(bad[..., None], torch.full_like(pts, float("nan")), pts)


def disparity_to_depth(disparity, focal: float, baseline: float):
    """Depth (metres) ``= focal * baseline / disparity`` (pixels); zero/negative disparity -> inf.

    KITTI stereo: ``baseline = 0.54`` m and ``focal = K[0, 0]``.
    """
    d = _t(disparity, "disparity")
    return torch.where(d > 0, focal * baseline / d.clamp_min(1e-30), torch.full_like(d, float("inf")))


def depth_to_disparity(depth, focal: float, baseline: float):
    """Disparity (pixels) ``= focal * baseline / depth``; zero/negative depth -> 0 (no match)."""
    z = _t(depth, "depth")
    return torch.where(z > 0, focal * baseline / z.clamp_min(1e-30), torch.zeros_like(z))
