"""Error maps for optical flow, in the KITTI devkit's log colour scheme.

The KITTI flow devkit (``errorImage``) colours each valid pixel by ``min(epe / 3, 20 * epe / |gt|)``
in ten logarithmic bins from dark blue (tiny error) to dark red (error beyond the Fl-all outlier
thresholds); invalid pixels are black. A value of 1 is the Fl-all boundary (3 px and 5 %).
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from .color import _as_hw2

# (low, high, RGB) bins of the KITTI devkit's log colour map
KITTI_ERROR_BINS = (
    (0.0, 0.0625, (49, 54, 149)),
    (0.0625, 0.125, (69, 117, 180)),
    (0.125, 0.25, (116, 173, 209)),
    (0.25, 0.5, (171, 217, 233)),
    (0.5, 1.0, (224, 243, 248)),
    (1.0, 2.0, (254, 224, 144)),
    (2.0, 4.0, (253, 174, 97)),
    (4.0, 8.0, (244, 109, 67)),
    (8.0, 16.0, (215, 48, 39)),
    (16.0, np.inf, (165, 0, 38)),
)


def error_map(pred, gt, valid=None) -> np.ndarray:
    """Colour the end-point error of ``pred`` against ``gt``.

    Args:
        pred, gt: ``(H, W, 2)`` or ``(2, H, W)`` flows.
        valid: ``(H, W)`` bool, True where ``gt`` is defined (default: finite gt).

    Returns:
        ``(H, W, 3)`` uint8 RGB; invalid pixels black.
    """
    p, g = _as_hw2(pred), _as_hw2(gt)
    if p.shape != g.shape:
        raise ShapeError(f"error_map: pred shape {p.shape} differs from gt shape {g.shape}")
    if valid is None:
        valid = np.isfinite(g).all(-1)
    valid = np.asarray(valid, dtype=bool)
    if valid.shape != g.shape[:2]:
        raise ShapeError(f"error_map valid: expected shape {g.shape[:2]}, found {valid.shape}")
    epe = np.linalg.norm(np.nan_to_num(p - g), axis=-1)
    mag = np.linalg.norm(np.nan_to_num(g), axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.minimum(epe / 3.0, np.where(mag > 0, 20.0 * epe / mag, np.inf))
    out = np.zeros(g.shape[:2] + (3,), dtype=np.uint8)
    for low, high, rgb in KITTI_ERROR_BINS:
        out[valid & (value >= low) & (value < high)] = rgb
    return out
