"""Scene flow pictures: a bird's-eye view of a point cloud coloured by its flow."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from .color import flow_to_color


def _as_points(name: str, arr) -> np.ndarray:
    a = np.asarray(arr.detach().cpu() if hasattr(arr, "detach") else arr, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3:
        raise ShapeError(f"{name}: expected shape (N, 3), found {tuple(a.shape)}")
    return a


def scene_flow_bev(
    points,
    flow,
    background=None,
    extent: float = 40.0,
    resolution: float = 0.1,
    max_flow: float | None = None,
    min_flow: float = 0.05,
    point_size: int = 2,
) -> np.ndarray:
    """Bird's-eye image of ``points`` coloured by the horizontal part of ``flow``.

    The image looks down the z axis: +x (forward) points up, +y (left) points left, the sensor is at
    the centre. Colour = the Middlebury wheel applied to the (x, y) flow, so hue shows the direction of
    motion and saturation its speed; points that move less than ``min_flow`` metres are drawn grey.
    ``background`` (e.g. the second sweep) is drawn dark grey underneath.

    Args:
        points: ``(N, 3)`` metres.
        flow: ``(N, 3)`` metres per frame pair (NaN rows are drawn grey).
        background: optional ``(M, 3)`` cloud.
        extent: half-width of the square view in metres.
        resolution: metres per pixel.
        max_flow: flow magnitude at full saturation (default: the 99th percentile, at least 0.5 m).
        min_flow: below this magnitude a point is drawn as static.
        point_size: side of the square (pixels) drawn for each point.

    Returns:
        ``(S, S, 3)`` uint8 RGB with ``S = 2 * extent / resolution``, black background.
    """
    p = _as_points("points", points)
    f = _as_points("flow", flow)
    if len(p) != len(f):
        raise ShapeError(f"scene_flow_bev: {len(p)} points but {len(f)} flow vectors")
    size = int(round(2 * extent / resolution))
    image = np.zeros((size, size, 3), dtype=np.uint8)

    def pixels(xyz):
        row = ((extent - xyz[:, 0]) / resolution).astype(np.int64)
        col = ((extent - xyz[:, 1]) / resolution).astype(np.int64)
        keep = (row >= 0) & (row < size) & (col >= 0) & (col < size) & np.isfinite(xyz).all(1)
        return row[keep], col[keep], keep

    def draw(rows, cols, colours):
        for dr in range(point_size):
            for dc in range(point_size):
                image[np.minimum(rows + dr, size - 1), np.minimum(cols + dc, size - 1)] = colours

    if background is not None:
        r, c, _ = pixels(_as_points("background", background))
        draw(r, c, (70, 70, 70))

    horizontal = f[:, :2]
    speed = np.linalg.norm(np.nan_to_num(horizontal), axis=1)
    if max_flow is None:
        max_flow = max(float(np.percentile(speed, 99)) if len(speed) else 0.0, 0.5)
    # image axes: up = +x, left = +y, so image-u = -flow_y and image-v = -flow_x
    colours = flow_to_color(np.stack([-horizontal[:, 1], -horizontal[:, 0]], -1)[None], max_flow)[0]
    static = ~(speed >= min_flow)
    colours[static] = (170, 170, 170)
    r, c, keep = pixels(p)
    order = np.argsort(speed[keep], kind="stable")  # movers drawn last, on top
    draw(r[order], c[order], colours[keep][order])
    return image
