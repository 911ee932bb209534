"""Rerun recordings (``.rrd``) of optical flow over a video and of lidar scene flow, to scrub in the Rerun viewer.

``rerun-sdk`` is the optional ``rerun`` extra (``pip install 'motionflow[rerun]'``), imported on first use;
a missing one raises :class:`~motionflow.errors.MissingDependencyError`. Open a file with ``rerun FILE.rrd``.

Entity layout (timelines: ``frame`` for videos, ``sample`` for lidar pairs):

* optical flow: ``video/frame`` (the first frame of the pair), ``video/flow`` (the flow colour image with
  one normalisation for the video, see :func:`~motionflow.viz.color.flow_picture`), ``video/max_flow_px``
  (the normalisation, a scalar) and, static, ``legend/color_wheel``;
* scene flow: ``lidar/pc1`` (coloured like the pictures: motion relative to the static world, grey
  below ``min_speed``), ``lidar/pc2``, ``lidar/flow`` (arrows from pc1 along the flow, for the points that
  move relative to the world), ``lidar/clusters`` (pc1 points by cluster id) and
  ``lidar/cluster_motion`` (one arrow per moving cluster), with ground truth ``lidar/gt_flow`` and
  ``lidar/error`` (pc1 coloured by ``||flow - gt||``), and ``metrics/<name>`` scalars.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from ..errors import require

STATIC_RGB, GROUND_RGB, PC2_RGB = (140, 140, 140), (205, 205, 205), (90, 140, 220)


def require_rerun():
    """Import ``rerun`` lazily (``pip install rerun-sdk``, or the ``rerun`` extra)."""
    return require("rerun", "rerun-sdk", hint="or: pip install 'motionflow[rerun]'")


@contextmanager
def recording(path, application: str = "motionflow"):
    """Context manager: a Rerun ``RecordingStream`` that writes the file ``path`` (parent folders created).

    The stream goes to a temporary file beside ``path`` (:func:`motionflow.io.atomic_path`), which
    replaces ``path`` when the block ends without an error, complete and finalised (with its footer); on
    an error it is removed.
    """
    rr = require_rerun()
    from ..io.atomic import atomic_path

    with atomic_path(path) as tmp:
        rec = rr.RecordingStream(application)
        rec.save(str(tmp))
        try:
            yield rec
        finally:
            rec.disconnect()


def log_optical_flow(rec, frame_index: int, frame=None, flow=None, max_flow: float | None = None,
                     valid=None, picture=None, entity: str = "video/flow") -> None:
    """Log one pair of a video at ``frame_index`` on the ``frame`` timeline.

    Args:
        rec: from :func:`recording`.
        frame: ``(H, W, 3)`` uint8 RGB (the pair's first frame), or None.
        flow: ``(H, W, 2)`` flow in px, or None.
        max_flow: the video's normalisation (px); the colour wheel is logged once, statically.
        picture: ``(H, W, 3)`` uint8 already drawn (e.g. by :func:`~motionflow.viz.color.flow_picture`
            with ``max_flow``, or a ReynoldsFlow+ image), logged instead of ``flow``.
        entity: where the picture goes. The colour wheel (how to read a flow colour) is logged only
            with flow pictures in ``video/flow``; a ReynoldsFlow+ image (``video/reynolds_plus``) is not
            colour-coded flow.
    """
    rr = require_rerun()
    from .color import color_wheel_legend, flow_picture

    if entity == "video/flow" and not getattr(rec, "_motionflow_wheel", False):
        rec.log("legend/color_wheel", rr.Image(color_wheel_legend(256)), static=True)
        rec._motionflow_wheel = True
    rec.reset_time()
    rec.set_time("frame", sequence=int(frame_index))
    if frame is not None:
        rec.log("video/frame", rr.Image(np.ascontiguousarray(frame)))
    if picture is None and flow is not None:
        picture = flow_picture(flow, max_flow=max_flow, valid=valid, legend=False)
    if picture is not None:
        rec.log(entity, rr.Image(np.ascontiguousarray(picture)))
    if max_flow is not None:
        rec.log("video/max_flow_px", rr.Scalars(float(max_flow)))


def _speed_colours(value: np.ndarray, ground: np.ndarray, vmax: float, min_speed: float) -> np.ndarray:
    from .annotate import apply_colormap

    colours = apply_colormap(value, vmax=vmax, name="viridis")
    colours[~np.isfinite(value) | (value < min_speed)] = STATIC_RGB
    colours[ground] = GROUND_RGB
    return colours


def log_scene_flow(rec, index: int, pc1, pc2, flow, *, gt=None, valid=None, ego_motion=None, labels=None,
                   ground=None, metrics: dict | None = None, min_speed: float = 0.05,
                   max_speed: float | None = None) -> None:
    """Log one lidar pair at ``index`` on the ``sample`` timeline (see the module docstring).

    Args:
        pc1, pc2: ``(N, 3)`` / ``(M, 3)`` metres.
        flow: ``(N, 3)`` metres per frame pair on pc1 (NaN rows: no flow).
        gt, valid: optional ground truth ``(N, 3)`` and the points it is defined on (default finite gt).
        ego_motion: ``(4, 4)`` pc1 -> pc2 frame; removed from the colours, not from the arrows.
        labels: ``(N,)`` cluster ids (-1 none, -2 ground), e.g. ``result.extras["labels1"]``.
        ground: ``(N,)`` bool (default ``labels == -2``).
        metrics: scalars to log under ``metrics/``.
    """
    rr = require_rerun()
    from .points import _as_mask, _as_points, _cluster_arrows, scene_inputs

    p1, f, motion, labels, ground, ego = scene_inputs(pc1, flow, labels, ground, ego_motion)
    n = len(p1)
    speed = np.linalg.norm(motion, axis=1)
    moving = np.isfinite(speed) & (speed >= min_speed) & ~ground
    if max_speed is None:
        max_speed = max(float(np.percentile(speed[moving], 99)) if moving.any() else 0.0, 0.5)
    rec.reset_time()
    rec.set_time("sample", sequence=int(index))
    rec.log("lidar/pc1", rr.Points3D(p1, colors=_speed_colours(speed, ground, max_speed, min_speed), radii=0.05))
    rec.log("lidar/pc2", rr.Points3D(_as_points("pc2", pc2), colors=PC2_RGB, radii=0.04))
    rec.log("lidar/flow", rr.Arrows3D(origins=p1[moving], vectors=f[moving]))
    if labels is not None:
        clustered = labels >= 0
        rec.log("lidar/clusters", rr.Points3D(p1[clustered], class_ids=labels[clustered], radii=0.06))
        cents, moves = _cluster_arrows(p1, motion, labels, min_speed)
        rec.log("lidar/cluster_motion", rr.Arrows3D(origins=cents, vectors=moves, colors=(220, 20, 60), radii=0.08))
    if gt is not None:
        g = _as_points("gt", gt, n)
        ok = _as_mask("valid", valid, n) if valid is not None else np.isfinite(g).all(1)
        g_moving = ok & (np.linalg.norm(g - ego, axis=1) >= min_speed) & ~ground
        rec.log("lidar/gt_flow", rr.Arrows3D(origins=p1[g_moving], vectors=g[g_moving], colors=(255, 140, 0)))
        err = np.where(ok, np.linalg.norm(f - g, axis=1), np.nan)
        rec.log("lidar/error", rr.Points3D(p1[ok], colors=_speed_colours(err, np.zeros(n, bool), max_speed,
                                                                         min_speed)[ok], radii=0.05))
    for name, value in (metrics or {}).items():
        if value is not None and np.isfinite(value):
            rec.log(f"metrics/{name}", rr.Scalars(float(value)))
