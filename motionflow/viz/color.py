"""Optical flow as colour: the Middlebury colour wheel (Baker et al., IJCV 2011).

Convention: hue encodes direction, saturation encodes magnitude relative to ``max_flow``; zero flow is
white. With image coordinates (x right, y down): flow to the right is red, down is yellow-green... more
precisely right -> red, down -> yellow, left -> cyan, up -> blue/violet, as in the Middlebury code.
Magnitudes above ``max_flow`` are drawn darker (value scaled by 0.75), as in the reference code.
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError

# segment lengths of the wheel: red-yellow, yellow-green, green-cyan, cyan-blue, blue-magenta, magenta-red
_SEGMENTS = (("RY", 15), ("YG", 6), ("GC", 4), ("CB", 11), ("BM", 13), ("MR", 6))


def make_color_wheel() -> np.ndarray:
    """The 55-entry Middlebury colour wheel, ``(55, 3)`` float in [0, 255] (RGB)."""
    rows = []
    ry, yg, gc, cb, bm, mr = (n for _, n in _SEGMENTS)
    for i in range(ry):
        rows.append((255, np.floor(255 * i / ry), 0))
    for i in range(yg):
        rows.append((255 - np.floor(255 * i / yg), 255, 0))
    for i in range(gc):
        rows.append((0, 255, np.floor(255 * i / gc)))
    for i in range(cb):
        rows.append((0, 255 - np.floor(255 * i / cb), 255))
    for i in range(bm):
        rows.append((np.floor(255 * i / bm), 0, 255))
    for i in range(mr):
        rows.append((255, 0, 255 - np.floor(255 * i / mr)))
    return np.asarray(rows, dtype=np.float64)


_WHEEL = make_color_wheel()


def _as_hw2(flow) -> np.ndarray:
    arr = np.asarray(flow.detach().cpu() if hasattr(flow, "detach") else flow, dtype=np.float64)
    if arr.ndim == 3 and arr.shape[0] == 2 and arr.shape[-1] != 2:
        arr = arr.transpose(1, 2, 0)
    if arr.ndim != 3 or arr.shape[-1] != 2:
        raise ShapeError(f"flow: expected shape (H, W, 2) or (2, H, W), found {tuple(arr.shape)}")
    return arr


def flow_to_color(flow, max_flow: float | None = None) -> np.ndarray:
    """Colour-code a flow field.

    Args:
        flow: ``(H, W, 2)`` or ``(2, H, W)`` array or tensor, channel 0 = u (x, right), 1 = v (y, down).
            Non-finite vectors are drawn black.
        max_flow: magnitude that maps to full saturation. Default: the largest finite magnitude
            in ``flow`` (at least 1e-5).

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    f = _as_hw2(flow)
    finite = np.isfinite(f).all(-1)
    # `+ 0.0` turns -0.0 into 0.0 so that arctan2 below does not depend on the sign of zero
    u = np.where(finite, f[..., 0], 0.0) + 0.0
    v = np.where(finite, f[..., 1], 0.0) + 0.0
    rad = np.sqrt(u**2 + v**2)
    if max_flow is None:
        max_flow = float(rad.max()) if rad.size else 1.0
    max_flow = max(float(max_flow), 1e-5)
    u, v, rad = u / max_flow, v / max_flow, rad / max_flow

    ncols = len(_WHEEL)
    angle = np.arctan2(-v, -u) / np.pi  # in [-1, 1]
    fk = (angle + 1) / 2 * (ncols - 1)
    k0 = np.floor(fk).astype(np.int64)
    k1 = (k0 + 1) % ncols
    frac = (fk - k0)[..., None]
    col = ((1 - frac) * _WHEEL[k0] + frac * _WHEEL[k1]) / 255.0
    inside = (rad <= 1)[..., None]
    col = np.where(inside, 1 - rad[..., None] * (1 - col), col * 0.75)
    out = np.floor(255 * col).astype(np.uint8)
    out[~finite] = 0
    return out


def color_wheel_legend(size: int = 64) -> np.ndarray:
    """A picture of the colour wheel: ``(size, size, 3)`` uint8, white outside the unit circle."""
    if size < 4:
        raise ShapeError(f"color_wheel_legend size: expected >= 4, found {size}")
    c = (size - 1) / 2
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    flow = np.stack([(xs - c) / c, (ys - c) / c], -1)
    out = flow_to_color(flow, max_flow=1.0)
    out[np.hypot(flow[..., 0], flow[..., 1]) > 1] = 255
    return out


def flow_scale(flows, percentile: float = 99.0) -> float:
    """One colour normalisation for a whole sequence: the largest per-flow ``percentile`` magnitude (px).

    Args:
        flows: iterable of flows (``(H, W, 2)`` / ``(2, H, W)``) or of ``(flow, valid)`` pairs; only
            finite, valid vectors count. Streamed: one flow is held at a time.
        percentile: per-flow percentile of the magnitude (99: a few outlier pixels do not wash out the
            colours; 100: nothing in the sequence saturates).

    Returns:
        The normalisation in px (at least 1.0, so that a static video stays white).
    """
    if not 0 < percentile <= 100:
        raise ShapeError(f"percentile: expected a value in (0, 100], found {percentile}")
    scale = 1.0
    for item in flows:
        flow, valid = item if isinstance(item, tuple) else (item, None)
        f = _as_hw2(flow)
        mag = np.linalg.norm(f, axis=-1)
        keep = np.isfinite(mag) if valid is None else np.isfinite(mag) & np.asarray(valid, dtype=bool)
        if keep.any():
            scale = max(scale, float(np.percentile(mag[keep], percentile)))
    return scale


def flow_picture(flow, max_flow: float | None = None, valid=None, legend: bool = True) -> np.ndarray:
    """A flow colour image that says how to read it: the colour wheel inset top right and, under it,
    the normalisation ``max N px`` (the magnitude drawn fully saturated).

    Args:
        flow: ``(H, W, 2)`` or ``(2, H, W)`` flow in px.
        max_flow: normalisation in px; default: this flow's largest finite magnitude. Pass one value
            (e.g. :func:`flow_scale`) for every picture of a video so that a colour means one motion.
        valid: optional ``(H, W)`` bool; invalid pixels are drawn black.
        legend: draw the wheel and the text (skipped when the picture is under 48 px on a side).

    Returns:
        ``(H, W, 3)`` uint8 RGB, the size of the flow.
    """
    from .annotate import draw_text, font_scale, text_size

    f = _as_hw2(flow)
    if valid is not None:
        f = np.where(np.asarray(valid, dtype=bool)[..., None], f, np.nan)
    if max_flow is None:
        mag = np.linalg.norm(f, axis=-1)
        max_flow = float(np.nanmax(mag)) if np.isfinite(mag).any() else 1.0
    max_flow = max(float(max_flow), 1e-5)
    out = np.ascontiguousarray(flow_to_color(f, max_flow=max_flow))
    h, w = out.shape[:2]
    if not legend or min(h, w) < 48:
        return out
    size = max(24, min(h, w) // 5)
    out[4:4 + size, w - 4 - size:w - 4] = color_wheel_legend(size)
    text = f"max {max_flow:.3g} px"
    scale = font_scale(h)
    tw, _ = text_size(text, scale)
    draw_text(out, text, (max(2, w - 4 - max(tw, size) + (max(tw, size) - tw) // 2), 8 + size), scale)
    return out
