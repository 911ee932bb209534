"""Edge-aware interpolation of reliable flow into unreliable pixels (EpicFlow-style densification).

EpicFlow (Revaud et al., CVPR 2015) fills every pixel from the matches nearest to it under a
*geodesic* distance whose cost grows across image edges, so motion does not leak across object
boundaries. Here the geodesic nearest-match search is approximated by an iterative edge-aware
propagation on a coarse grid (1/``scale`` resolution): at every step each unreliable cell takes the
confidence-weighted mean of its 8 neighbours, each weighted by ``exp(-|colour difference| /
sigma)``, and its confidence becomes the best neighbour's confidence times that weight (so
confidence decays like ``exp(-geodesic distance)``). Reliable pixels keep their own flow.
Deviation from EpicFlow: no locally-affine fit (a Nadaraya-Watson average instead), and the
propagation stops after ``iterations`` coarse steps; pixels still unreached keep their input flow.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from motionflow.errors import ShapeError

__all__ = ["edge_aware_fill"]


def _masked_pool(x: torch.Tensor, w: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    num = F.avg_pool2d(x * w, scale, ceil_mode=True)
    den = F.avg_pool2d(w, scale, ceil_mode=True)
    return num / den.clamp_min(1e-6), den


def edge_aware_fill(
    flow: torch.Tensor,
    reliable: torch.Tensor,
    guide: torch.Tensor,
    scale: int = 4,
    iterations: int = 40,
    sigma: float = 8.0,
) -> torch.Tensor:
    """Replace the flow of unreliable pixels by an edge-aware interpolation of the reliable ones.

    Args:
        flow: ``(B, 2, H, W)`` flow.
        reliable: bool ``(B, H, W)``: True where ``flow`` is trusted (e.g. forward-backward consistent).
        guide: ``(B, C, H, W)`` image in [0, 255] whose edges stop the propagation.
        scale: coarse grid step in pixels.
        iterations: propagation steps on the coarse grid (reach: ``iterations * scale`` pixels).
        sigma: colour difference (grey levels, mean over channels) that divides the weight by e.

    Returns:
        ``(B, 2, H, W)`` flow: ``flow`` where reliable, the interpolation elsewhere.
    """
    if flow.ndim != 4 or flow.shape[1] != 2:
        raise ShapeError(f"flow: expected (B, 2, H, W), found {tuple(flow.shape)}")
    b, _, h, w = flow.shape
    if tuple(reliable.shape) != (b, h, w) or guide.shape[0] != b or guide.shape[-2:] != flow.shape[-2:]:
        raise ShapeError(
            f"reliable, guide: expected ({b}, {h}, {w}) and ({b}, C, {h}, {w}), "
            f"found {tuple(reliable.shape)} and {tuple(guide.shape)}"
        )
    rel = reliable[:, None].to(flow.dtype)
    if bool(rel.min() > 0):
        return flow
    cflow, conf = _masked_pool(flow, rel, scale)
    cguide = F.avg_pool2d(guide, scale, ceil_mode=True)
    ch, cw = cflow.shape[-2:]
    known = conf > 0.5
    conf = known.to(flow.dtype)
    # colour weights to the 8 neighbours (plus self), fixed during the propagation
    gpatch = F.unfold(F.pad(cguide, (1, 1, 1, 1), mode="replicate"), 3).view(b, cguide.shape[1], 9, ch, cw)
    wcol = torch.exp(-(gpatch - cguide[:, :, None]).abs().mean(1) / sigma)  # (B, 9, h, w)
    for _ in range(iterations):
        cpatch = F.unfold(F.pad(conf, (1, 1, 1, 1)), 3).view(b, 9, ch, cw)
        weight = wcol * cpatch
        fpatch = F.unfold(F.pad(cflow, (1, 1, 1, 1)), 3).view(b, 2, 9, ch, cw)
        den = weight.sum(1, keepdim=True)
        interp = (fpatch * weight[:, None]).sum(2) / den.clamp_min(1e-12)
        new_conf = weight.max(1, keepdim=True).values
        update = (~known) & (den > 0)
        cflow = torch.where(update, interp, cflow)
        conf = torch.where(known, conf, torch.maximum(conf, new_conf))
    reached = conf > 0
    filled = F.interpolate(cflow, scale_factor=scale, mode="bilinear", align_corners=False)[..., :h, :w]
    reach = F.interpolate(reached.to(flow.dtype), scale_factor=scale, mode="nearest")[..., :h, :w] > 0
    return torch.where(rel.bool() | ~reach, flow, filled)
