"""Forward-backward consistency occlusion masks (Sundaram, Brox & Keutzer, ECCV 2010).

A pixel ``p`` of frame t is visible in frame t+1 when following the forward flow ``w(p)`` and then the
backward flow at the landing point, ``w_hat(p) = w_bw(p + w(p))``, returns close to ``p``. Sundaram et
al. mark ``p`` occluded when

    |w + w_hat|^2 > alpha1 * (|w|^2 + |w_hat|^2) + alpha2

with ``alpha1 = 0.01`` and ``alpha2 = 0.5`` px^2 (the thresholds of the paper, also used by UnFlow,
Meister et al. AAAI 2018): the tolerance grows with the motion magnitude to allow for interpolation
errors of long flows.
"""

from __future__ import annotations

import torch

from motionflow.errors import ShapeError
from motionflow.ops.warp import _check_flow, backward_warp

__all__ = ["occlusion_mask"]


def occlusion_mask(
    f_fw: torch.Tensor,
    f_bw: torch.Tensor,
    alpha1: float = 0.01,
    alpha2: float = 0.5,
    out_of_frame: bool = True,
) -> torch.Tensor:
    """Occlusion mask of frame t from forward-backward consistency.

    Args:
        f_fw: ``(B, 2, H, W)`` forward flow t -> t+1 (pixels, x first).
        f_bw: ``(B, 2, H, W)`` backward flow t+1 -> t.
        alpha1: relative tolerance (0.01 in Sundaram et al. 2010).
        alpha2: absolute tolerance in px^2 (0.5 in Sundaram et al. 2010).
        out_of_frame: also mark pixels whose forward flow leaves the image as occluded (they have
            no correspondence in frame t+1).

    Returns:
        bool ``(B, H, W)`` mask, True = occluded (inconsistent) in frame t.
    """
    _check_flow("f_fw", f_fw)
    _check_flow("f_bw", f_bw, f_fw, "f_fw")
    if alpha1 < 0 or alpha2 < 0:
        raise ShapeError(f"alpha1, alpha2: expected non-negative thresholds, found {alpha1}, {alpha2}")
    w_hat, inside = backward_warp(f_bw, f_fw, padding="border")
    lhs = (f_fw + w_hat).pow(2).sum(1)
    rhs = alpha1 * (f_fw.pow(2).sum(1) + w_hat.pow(2).sum(1)) + alpha2
    occluded = lhs > rhs
    if out_of_frame:
        occluded = occluded | ~inside
    return occluded
