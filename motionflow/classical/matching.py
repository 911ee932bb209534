"""Large-displacement initialisation: DIS patch matches, their reliability, and candidate fusion.

Patch matches come from OpenCV's Dense Inverse Search (Kroeger et al., ECCV 2016) *patch stage only*
(its own variational refinement is switched off: :mod:`motionflow.classical.variational` replaces
it). DIS searches coarse to fine with inverse-compositional patch alignment, so it reaches
displacements of about ``2^(levels) * patch_size`` pixels; several patch configurations are run and
fused per pixel by their local matching cost (a fusion-move style selection, Lempitsky et al. 2010),
which recovers regions that one configuration misses.

The rest (fusion, reliability by forward-backward consistency) is torch and runs on any device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from motionflow.errors import require_cv2
from motionflow.ops.warp import backward_warp

__all__ = ["PatchConfig", "dis_patch_flow", "matching_cost", "fuse_candidates", "to_grey"]


@dataclass(frozen=True)
class PatchConfig:
    """One DIS patch-search configuration (OpenCV ``DISOpticalFlow`` setters of the same names)."""

    patch_size: int = 8
    patch_stride: int = 3
    finest_scale: int = 1
    gradient_descent_iterations: int = 25


def to_grey(frames: torch.Tensor) -> torch.Tensor:
    """``(..., 3, H, W)`` RGB in [0, 255] -> ``(..., 1, H, W)`` luma (ITU-R BT.601)."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=frames.dtype, device=frames.device).view(3, 1, 1)
    return (frames * w).sum(-3, keepdim=True)


def dis_patch_flow(grey1: torch.Tensor, grey2: torch.Tensor, config: PatchConfig) -> torch.Tensor:
    """DIS patch-stage flow from ``grey1`` to ``grey2`` (``(B, 1, H, W)`` in [0, 255]) -> ``(B, 2, H, W)``.

    Runs OpenCV on the CPU (one image pair at a time); the result is moved to the input's device.
    """
    cv2 = require_cv2()
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    dis.setPatchSize(config.patch_size)
    dis.setPatchStride(config.patch_stride)
    dis.setFinestScale(config.finest_scale)
    dis.setGradientDescentIterations(config.gradient_descent_iterations)
    dis.setVariationalRefinementIterations(0)
    a = grey1.detach().round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    b = grey2.detach().round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    out = [dis.calc(np.ascontiguousarray(a[i, 0]), np.ascontiguousarray(b[i, 0]), None) for i in range(a.shape[0])]
    flow = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)
    return flow.to(device=grey1.device, dtype=grey1.dtype)


def matching_cost(grey1: torch.Tensor, grey2: torch.Tensor, flow: torch.Tensor, window: int = 7, tau: float = 30.0):
    """Local matching cost of ``flow`` ``(B, 2, H, W)``: truncated absolute brightness plus gradient
    difference between ``grey1`` and ``grey2`` warped by the flow, box-averaged over ``window`` x
    ``window`` pixels. Pixels that leave the image cost ``tau`` (the truncation). Returns ``(B, 1, H, W)``."""
    from .variational import image_gradient

    warped, inside = backward_warp(grey2, flow, padding="border")
    gx1, gy1 = image_gradient(grey1)
    gx2, gy2 = image_gradient(warped)
    diff = (warped - grey1).abs() + (gx2 - gx1).abs() + (gy2 - gy1).abs()
    diff = torch.where(inside[:, None], diff.clamp(max=tau), torch.full_like(diff, tau))
    return F.avg_pool2d(diff, window, stride=1, padding=window // 2, count_include_pad=False)


def fuse_candidates(grey1: torch.Tensor, grey2: torch.Tensor, candidates: list[torch.Tensor], window: int = 7):
    """Per pixel, keep the candidate flow ``(B, 2, H, W)`` of lowest :func:`matching_cost`.

    Returns ``(fused (B, 2, H, W), choice (B, H, W) long index into candidates)``.
    """
    if len(candidates) == 1:
        c = candidates[0]
        return c, torch.zeros(c.shape[0], *c.shape[-2:], dtype=torch.long, device=c.device)
    fused = candidates[0]
    best = matching_cost(grey1, grey2, fused, window)
    choice = torch.zeros_like(best, dtype=torch.long)
    for k, cand in enumerate(candidates[1:], start=1):
        cost = matching_cost(grey1, grey2, cand, window)
        better = cost < best
        fused = torch.where(better, cand, fused)
        best = torch.where(better, cost, best)
        choice = torch.where(better, torch.full_like(choice, k), choice)
    return fused, choice[:, 0]
