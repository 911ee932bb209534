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
