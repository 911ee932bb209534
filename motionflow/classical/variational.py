"""Coarse-to-fine robust variational refinement (Brox et al. ECCV 2004; Sun, Roth & Black IJCV 2014).

Energy of a flow ``w = (u, v)`` between grey images ``I1`` and ``I2`` (values in [0, 255])::

    E(w) = sum_x  delta * psi(|I2(x + w) - I1(x)|^2)                       brightness constancy
                + gamma * psi(|grad I2(x + w) - grad I1(x)|^2)            gradient constancy
                + alpha * psi(|grad u|^2 + |grad v|^2)                    smoothness

with the Charbonnier penalty ``psi(s^2) = sqrt(s^2 + eps^2)``. It is minimised coarse to fine over an
image pyramid (downsampling factor 2): at each level the data terms are linearised around the current
flow (``warps`` times; Brox's outer fixed point), the non-linear penalties are frozen (lagged
diffusivity, ``outer`` times) and the resulting linear system in the increment ``dw`` is solved by
red-black successive over-relaxation (``inner`` sweeps, relaxation ``omega``). After every warp the
flow is median filtered (5 x 5, Sun et al.'s "secrets" heuristic that removes outliers of the
linearisation).

Default weights follow OpenCV's ``VariationalRefinement`` (alpha 20, gamma 10, delta 5, images in
[0, 255]), whose energy this is; spatial derivatives of the warped image are averaged with those of
``I1`` (Sun et al.). Pixels warped out of the image get no data term.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from motionflow.errors import ShapeError
from motionflow.ops.upsample import resize_flow
from motionflow.ops.warp import backward_warp

__all__ = ["VariationalParams", "refine_flow", "refine_level", "image_gradient"]


@dataclass
class VariationalParams:
    """Parameters of :func:`refine_flow`.

    Attributes:
        alpha: smoothness weight.
        gamma: gradient-constancy weight.
        delta: brightness-constancy weight.
        eps: Charbonnier epsilon (grey levels).
        start_level: pyramid level where refinement starts (0 = full resolution, k = 1/2^k).
        end_level: finest level refined; coarser-than-full ends are upsampled bilinearly.
        warps: linearisations per level (each followed by a 5 x 5 median filter of the flow).
        outer: lagged-nonlinearity updates per warp.
        inner: red-black SOR sweeps per lagged update.
        omega: SOR relaxation factor (1 = Gauss-Seidel).
        median: median filter size after each warp (0 disables; Sun et al. use 5).
        finest_warps, finest_outer, finest_inner: ``warps`` / ``outer`` / ``inner`` at ``end_level``
            (the most expensive level); None = same as the other levels.
    """

    alpha: float = 20.0
    gamma: float = 10.0
    delta: float = 5.0
    eps: float = 1e-3
    start_level: int = 2
    end_level: int = 0
    warps: int = 2
    outer: int = 3
    inner: int = 6
    omega: float = 1.6
    median: int = 5
    finest_warps: int | None = None
    finest_outer: int | None = None
    finest_inner: int | None = None


def image_gradient(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central-difference derivatives ``(d/dx, d/dy)`` of ``(B, C, H, W)`` with replicated borders."""
    p = F.pad(img, (1, 1, 1, 1), mode="replicate")
    dx = 0.5 * (p[..., 1:-1, 2:] - p[..., 1:-1, :-2])
    dy = 0.5 * (p[..., 2:, 1:-1] - p[..., :-2, 1:-1])
    return dx, dy


def median_filter(flow: torch.Tensor, size: int) -> torch.Tensor:
    """``size`` x ``size`` median of each channel of ``(B, C, H, W)`` (replicated borders).

    On CPU with ``size`` 3 or 5 OpenCV's ``medianBlur`` is used (same result as the torch path,
    about 10x faster); elsewhere ``kornia.filters.median_blur``.
    """
    if size <= 1:
        return flow
    if flow.device.type == "cpu" and size in (3, 5) and flow.dtype == torch.float32 and not flow.requires_grad:
        from motionflow.errors import require_cv2

        cv2 = require_cv2()
        arr = flow.detach().permute(0, 2, 3, 1).contiguous().numpy()
        out = [cv2.medianBlur(a[..., c].copy(), size) for a in arr for c in range(arr.shape[-1])]
        import numpy as np

        res = np.stack(out).reshape(arr.shape[0], arr.shape[-1], *arr.shape[1:3])
        return torch.from_numpy(res)
    from kornia.filters import median_blur

    return median_blur(flow, size, border_type="replicate")


def _edge_weights(psi: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Diffusivities on the four neighbour edges of every pixel, ``(B, 1, H, W)`` each (right, left,
    down, up), averaged from the per-pixel diffusivity ``psi`` and zero across the image border."""
    ex = 0.5 * (psi[..., :, 1:] + psi[..., :, :-1])
    ey = 0.5 * (psi[..., 1:, :] + psi[..., :-1, :])
    right = F.pad(ex, (0, 1, 0, 0))
    left = F.pad(ex, (1, 0, 0, 0))
    down = F.pad(ey, (0, 0, 0, 1))
    up = F.pad(ey, (0, 0, 1, 0))
    return right, left, down, up


def _neighbour_sum(x: torch.Tensor, weights: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``sum_n w_n x_n`` over the 4-neighbourhood of ``x`` ``(B, C, H, W)``."""
    right, left, down, up = weights
    xp = F.pad(x, (1, 1, 1, 1))
    out = right * xp[..., 1:-1, 2:]
    out = out.addcmul_(left, xp[..., 1:-1, :-2])
    out = out.addcmul_(down, xp[..., 2:, 1:-1])
    return out.addcmul_(up, xp[..., :-2, 1:-1])


def refine_level(
    img1: torch.Tensor, img2: torch.Tensor, flow: torch.Tensor, params: VariationalParams
) -> torch.Tensor:
    """Refine ``flow`` ``(B, 2, H, W)`` between grey images ``(B, 1, H, W)`` at one pyramid level.

    The increment ``dw = (du, dv)`` of each pixel is solved exactly from its 2 x 2 block per red/black
    half sweep (block successive over-relaxation).
    """
    alpha, gamma, delta, eps2 = params.alpha, params.gamma, params.delta, params.eps**2
    b, _, h, w = flow.shape
    checker = (torch.arange(h, device=flow.device)[:, None] + torch.arange(w, device=flow.device)[None, :]) % 2
    red = (checker == 0).to(flow.dtype)[None, None] * params.omega
    black = (checker == 1).to(flow.dtype)[None, None] * params.omega
    g1x, g1y = image_gradient(img1)
    for _ in range(params.warps):
        i2w, inside = backward_warp(img2, flow, padding="border")
        g2x, g2y = image_gradient(i2w)
        ix, iy = 0.5 * (g1x + g2x), 0.5 * (g1y + g2y)
        iz = i2w - img1
        ixx, ixy = image_gradient(ix)
        _, iyy = image_gradient(iy)
        ixz, iyz = g2x - g1x, g2y - g1y
        keep = inside[:, None].to(flow.dtype)
        d = torch.zeros_like(flow)
        for _ in range(params.outer):
            du, dv = d[:, :1], d[:, 1:]
            rd = iz + ix * du + iy * dv
            psi_d = keep * delta * 0.5 * torch.rsqrt(rd * rd + eps2)
            rgx = ixz + ixx * du + ixy * dv
            rgy = iyz + ixy * du + iyy * dv
            psi_g = keep * gamma * 0.5 * torch.rsqrt(rgx * rgx + rgy * rgy + eps2)
            a11 = psi_d * ix * ix + psi_g * (ixx * ixx + ixy * ixy)
            a12 = psi_d * ix * iy + psi_g * (ixx * ixy + ixy * iyy)
            a22 = psi_d * iy * iy + psi_g * (ixy * ixy + iyy * iyy)
            b1 = -(psi_d * ix * iz + psi_g * (ixx * ixz + ixy * iyz))
            b2 = -(psi_d * iy * iz + psi_g * (ixy * ixz + iyy * iyz))
            # smoothness diffusivity on the total flow w + dw, averaged onto the neighbour edges
            fx, fy = image_gradient(flow + d)
            psi_s = alpha * 0.5 * torch.rsqrt((fx * fx + fy * fy).sum(1, keepdim=True) + eps2)
            weights = _edge_weights(psi_s)
            wsum = _neighbour_sum(torch.ones_like(psi_s), weights)
            rhs = torch.cat([b1, b2], 1) + _neighbour_sum(flow, weights) - wsum * flow
            # exact solve of the 2 x 2 pixel block (block Gauss-Seidel, stable for the SPD system)
            inv_det = 1.0 / ((a11 + wsum) * (a22 + wsum) - a12 * a12)
            diag = torch.cat([a22 + wsum, a11 + wsum], 1) * inv_det
            off = a12 * inv_det
            # d lives inside a zero-bordered buffer so that the neighbour sums need no padding
            dp = F.pad(d, (1, 1, 1, 1))
            d = dp[..., 1:-1, 1:-1]
            right, left, down, up = weights
            for _ in range(params.inner):
                for colour in (red, black):
                    r = rhs + right * dp[..., 1:-1, 2:]
                    r.addcmul_(left, dp[..., 1:-1, :-2]).addcmul_(down, dp[..., 2:, 1:-1]).addcmul_(up, dp[..., :-2, 1:-1])
                    new = diag * r - off * r.flip(1)
                    d.addcmul_(colour, new.sub_(d))
            d = d.contiguous()
        flow = median_filter(flow + d, params.median)
    return flow


def _pyramid(img: torch.Tensor, levels: int) -> list[torch.Tensor]:
    from kornia.geometry.transform import pyrdown

    pyr = [img]
    for _ in range(levels):
        pyr.append(pyrdown(pyr[-1]))
    return pyr


def _resize(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """:func:`motionflow.ops.upsample.resize_flow` (bilinear), skipped when the size already matches."""
    return flow if tuple(flow.shape[-2:]) == tuple(size) else resize_flow(flow, size)


def refine_flow(
    img1: torch.Tensor, img2: torch.Tensor, flow: torch.Tensor, params: VariationalParams | None = None
) -> torch.Tensor:
    """Coarse-to-fine variational refinement of an initial flow.

    Args:
        img1, img2: ``(B, 1, H, W)`` grey images in [0, 255].
        flow: ``(B, 2, H, W)`` initial forward flow (e.g. from patch matching), pixels.
        params: :class:`VariationalParams` (defaults if None).

    Returns:
        ``(B, 2, H, W)`` refined flow at full resolution.
    """
    params = params or VariationalParams()
    if img1.ndim != 4 or img1.shape[1] != 1 or img1.shape != img2.shape:
        raise ShapeError(
            f"img1, img2: expected two grey images (B, 1, H, W) of one shape, found {tuple(img1.shape)} and {tuple(img2.shape)}"
        )
    if flow.ndim != 4 or flow.shape[1] != 2 or flow.shape[-2:] != img1.shape[-2:]:
        raise ShapeError(f"flow: expected (B, 2, {img1.shape[-2]}, {img1.shape[-1]}), found {tuple(flow.shape)}")
    if not 0 <= params.end_level <= params.start_level:
        raise ShapeError(
            f"params: expected 0 <= end_level <= start_level, found {params.end_level} and {params.start_level}"
        )
    # never refine a level smaller than 8 px a side
    start = params.start_level
    while start > params.end_level and min(img1.shape[-2:]) / 2**start < 8:
        start -= 1
    p1, p2 = _pyramid(img1, start), _pyramid(img2, start)
    cur = None
    for level in range(start, params.end_level - 1, -1):
        size = tuple(p1[level].shape[-2:])
        cur = _resize(flow if cur is None else cur, size)
        level_params = params
        if level == params.end_level:
            level_params = replace(
                params,
                warps=params.warps if params.finest_warps is None else params.finest_warps,
                outer=params.outer if params.finest_outer is None else params.finest_outer,
                inner=params.inner if params.finest_inner is None else params.finest_inner,
            )
        cur = refine_level(p1[level], p2[level], cur, level_params)
    return _resize(cur, tuple(img1.shape[-2:]))
