"""Error pictures for optical flow: the KITTI devkit's error image (with its legend) and EPE maps.

KITTI (``FlowImage::errorImage`` of the KITTI 2015 devkit, ``log_colors=true``): every pixel with ground
truth is coloured by ``min(epe / 3, 20 * epe / |gt|)``, i.e. the error relative to the Fl-all outlier
thresholds (3 px and 5 %), in ten logarithmic bins from dark blue to dark red; 1 is the outlier
boundary. Pixels that have ground truth but are occluded (valid in ``flow_occ``, not in ``flow_noc``) are
drawn at half brightness. The devkit paints each pixel as a 3 x 3 block (sparse KITTI ground truth
stays visible), skips the one-pixel image border as a source, and a later pixel in raster order
overwrites an earlier one; :func:`error_map` does the same unless ``dilate=False``. Pixels without
ground truth are black.

EPE maps (:func:`epe_picture`) colour the end-point error in px with a perceptual colour map and carry
a colour bar.
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from .color import _as_hw2

# (low, high, RGB) bins of the KITTI devkit's log colour map (LC in io_flow.h), in units of the Fl-all
# thresholds
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

#: colour of pixels without ground truth in :func:`epe_picture`
NO_GT = (200, 200, 200)


def _epe(pred, gt, valid, name: str):
    """``(epe, |gt|, valid)`` for two flows; ``valid`` defaults to finite gt."""
    p, g = _as_hw2(pred), _as_hw2(gt)
    if p.shape != g.shape:
        raise ShapeError(f"{name}: pred shape {p.shape} differs from gt shape {g.shape}")
    valid = np.isfinite(g).all(-1) if valid is None else np.asarray(valid, dtype=bool)
    if valid.shape != g.shape[:2]:
        raise ShapeError(f"{name} valid: expected shape {g.shape[:2]}, found {valid.shape}")
    epe = np.linalg.norm(np.nan_to_num(p - g), axis=-1)
    return epe, np.linalg.norm(np.nan_to_num(g), axis=-1), valid


def error_map(pred, gt, valid=None, noc=None, dilate: bool = True) -> np.ndarray:
    """The KITTI devkit's error image of ``pred`` against ``gt`` (see the module docstring).

    Args:
        pred, gt: ``(H, W, 2)`` or ``(2, H, W)`` flows.
        valid: ``(H, W)`` bool, True where ``gt`` is defined (``flow_occ``; default: finite gt).
        noc: ``(H, W)`` bool, True where the pixel is not occluded (``flow_noc``); pixels in ``valid``
            but not in ``noc`` are drawn at half brightness. Default: all of ``valid``.
        dilate: paint 3 x 3 blocks as the devkit does; False colours each valid pixel alone.

    Returns:
        ``(H, W, 3)`` uint8 RGB; pixels without ground truth black.
    """
    epe, mag, valid = _epe(pred, gt, valid, "error_map")
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.minimum(epe / 3.0, np.where(mag > 0, 20.0 * epe / mag, np.inf))
    colour = np.zeros(epe.shape + (3,), dtype=np.uint8)
    for low, high, rgb in KITTI_ERROR_BINS:
        colour[valid & (value >= low) & (value < high)] = rgb
    if noc is not None:
        noc = np.asarray(noc, dtype=bool)
        if noc.shape != valid.shape:
            raise ShapeError(f"error_map noc: expected shape {valid.shape}, found {noc.shape}")
        colour[valid & ~noc] //= 2  # the devkit's `val *= 0.5` on uint8 truncates
    if not dilate:
        return colour
    h, w = valid.shape
    source = np.zeros_like(valid)
    source[1:-1, 1:-1] = valid[1:-1, 1:-1]
    pad_c = np.pad(colour, ((1, 1), (1, 1), (0, 0)))
    pad_s = np.pad(source, 1)
    out = np.zeros_like(colour)
    # target (y, x) takes the last source (y + dv, x + du) in raster order: ascending (dv, du) overwrites
    for dv in (-1, 0, 1):
        for du in (-1, 0, 1):
            sel = pad_s[1 + dv:1 + dv + h, 1 + du:1 + du + w]
            out[sel] = pad_c[1 + dv:1 + dv + h, 1 + du:1 + du + w][sel]
    return out


def _bin_label(low: float, high: float) -> str:
    def f(v):
        return f"{v:g}"

    if low == 0:
        return f"< {f(high)}"
    return f">= {f(low)}" if not np.isfinite(high) else f"{f(low)} - {f(high)}"


def kitti_error_picture(pred, gt, valid=None, noc=None, dilate: bool = True) -> np.ndarray:
    """:func:`error_map` with the devkit's colour legend beside it (each bin's colour and range, in
    units of the Fl-all thresholds: 1 = 3 px and 5 % of |gt|) and the Fl-all share written on top.

    Returns ``(H', W + legend, 3)`` uint8 RGB, ``H' >= H``.
    """
    from .annotate import draw_text, font_scale, hstack, legend_panel

    image = error_map(pred, gt, valid, noc=noc, dilate=dilate)
    epe, mag, valid = _epe(pred, gt, valid, "kitti_error_picture")
    if valid.any():
        outlier = (epe > 3.0) & (epe > 0.05 * mag)
        text = f"Fl {100.0 * outlier[valid].mean():.2f} %"
        draw_text(image, text, (4, 4), font_scale(image.shape[0]))
    entries = [(rgb, _bin_label(low, high)) for low, high, rgb in KITTI_ERROR_BINS]
    return hstack(image, legend_panel(entries, "err / (3px, 5%)", image.shape[0]))


def epe_picture(pred, gt, valid=None, max_epe: float | None = None, colormap: str = "magma") -> np.ndarray:
    """End-point error map with a colour bar: ``||pred - gt||`` in px; pixels without ground truth are light
    grey (:data:`NO_GT`), so that they are not mistaken for the dark end of the colour map (small errors).

    Args:
        pred, gt: ``(H, W, 2)`` or ``(2, H, W)`` flows.
        valid: ``(H, W)`` bool (default: finite gt).
        max_epe: error (px) drawn brightest; default the 99th percentile of the valid errors (at least
            0.1 px). Pass one value to compare pictures of several methods.
        colormap: one of :data:`motionflow.viz.annotate.COLORMAPS`.

    Returns:
        ``(H', W + bar, 3)`` uint8 RGB with the mean EPE written top left.
    """
    from .annotate import apply_colormap, colour_bar, draw_text, font_scale, hstack

    epe, _, valid = _epe(pred, gt, valid, "epe_picture")
    if max_epe is None:
        max_epe = max(float(np.percentile(epe[valid], 99)) if valid.any() else 0.0, 0.1)
    image = np.ascontiguousarray(apply_colormap(np.where(valid, epe, np.nan), vmax=float(max_epe), name=colormap,
                                                invalid=NO_GT))
    if valid.any():
        draw_text(image, f"EPE {epe[valid].mean():.3g} px", (4, 4), font_scale(image.shape[0]))
    return hstack(image, colour_bar(image.shape[0], float(max_epe), "EPE px", name=colormap))
