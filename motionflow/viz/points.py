"""Scene-flow pictures: bird's-eye and side views of a lidar sweep coloured by its motion (matplotlib).

What the pictures show (the choices a reader needs to know, also written on them):

* **motion relative to the static world**: ``flow - ego_flow(pc1, ego_motion)`` when the ego motion is
  known, so that driving does not paint the whole scene; without it the colour is the raw flow (the
  colour-bar label says so);
* **colour = magnitude** of that motion in metres per frame pair, with one colour bar shared by every
  panel (estimate, ground truth, error), in a perceptual colour map; direction is shown by the arrows;
* points moving less than ``min_speed`` (0.05 m, the AccStrict / AV2 "dynamic" threshold) are grey,
  ground points light grey, points without flow (NaN) lighter still;
* **cluster motions** (``labels`` from the rigid methods, ``result.extras["labels1"]``) as arrows from
  each moving cluster's centroid along its mean motion, lengthened by a stated factor when short;
* the ego vehicle (a 4.5 x 1.9 m box centred at the origin, heading +x) in the bird's-eye view, the
  ego origin in the side view, metres on both axes and a scale bar.

Coordinates: x forward, y left, z up (the lidar convention of every supported dataset); the bird's-eye
view puts +x to the right and +y up, the side view +x to the right and +z up.
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from .figure import figure_to_rgb, new_figure

VIEWS = ("bev", "side")
EGO_SIZE = (4.5, 1.9)  # length, width (m) of the drawn ego vehicle
GROUND_GREY, STATIC_GREY, NOFLOW_GREY = "#d0d0d0", "#8a8a8a", "#ececec"


def _as_points(name: str, arr, n: int | None = None) -> np.ndarray:
    a = np.asarray(arr.detach().cpu() if hasattr(arr, "detach") else arr, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3:
        raise ShapeError(f"{name}: expected shape (N, 3), found {tuple(a.shape)}")
    if n is not None and len(a) != n:
        raise ShapeError(f"{name}: expected {n} rows (one per pc1 point), found {len(a)}")
    return a


def _as_mask(name: str, arr, n: int, dtype=bool) -> np.ndarray | None:
    if arr is None:
        return None
    a = np.asarray(arr, dtype=dtype)
    if a.shape != (n,):
        raise ShapeError(f"{name}: expected shape ({n},), found {a.shape}")
    return a


def scene_inputs(pc1, flow, labels=None, ground=None, ego_motion=None) -> tuple:
    """Checked inputs of a scene-flow view: ``(pc1, flow, motion, labels, ground, ego)`` with
    ``motion = flow - ego`` (``ego`` the ego flow of pc1, zeros when ``ego_motion`` is None), ``ground``
    defaulting to ``labels == -2`` (or no ground), ``labels`` None or ``(N,)`` int64."""
    p = _as_points("pc1", pc1)
    n = len(p)
    f = _as_points("flow", flow, n)
    labels = _as_mask("labels", labels, n, dtype=np.int64)
    ground = _as_mask("ground", ground, n)
    if ground is None:
        ground = labels == -2 if labels is not None else np.zeros(n, bool)
    ego = np.zeros_like(p)
    if ego_motion is not None:
        from ..geometry import ego_flow

        ego = ego_flow(p, ego_motion, name="pc1")
    return p, f, f - ego, labels, ground, ego


def _extent(points: np.ndarray, focus: np.ndarray, extent) -> tuple[float, float, float, float]:
    """``(xmin, xmax, ymin, ymax)`` of the bird's-eye view: ``extent`` (half-width, or 4 values), or a
    square around the sensor holding 90 % of ``points`` and 99 % of the ``focus`` points (the movers of
    the estimate and of the ground truth) with 3 m to spare, 10-50 m (the AV2 evaluation range), in 5 m
    steps."""
    if extent is not None:
        e = np.atleast_1d(np.asarray(extent, dtype=np.float64))
        if e.shape == (1,) and e[0] > 0:
            return (-e[0], e[0], -e[0], e[0])
        if e.shape == (4,) and e[0] < e[1] and e[2] < e[3]:
            return tuple(float(v) for v in e)
        raise ShapeError(f"extent: expected a positive half-width or (xmin, xmax, ymin, ymax), found {extent}")
    r = np.abs(points[:, :2][np.isfinite(points[:, :2]).all(1)])
    half = float(np.percentile(r.max(1), 90)) if len(r) else 10.0
    f = np.abs(focus[:, :2][np.isfinite(focus[:, :2]).all(1)])
    if len(f):
        half = max(half, float(np.percentile(f.max(1), 99)) + 3.0)
    half = float(np.clip(np.ceil(half / 5.0) * 5.0, 10.0, 50.0))
    return (-half, half, -half, half)


def _nice_length(span: float) -> float:
    """A 1/2/5 x 10^k length near a fifth of ``span`` (the scale bar)."""
    raw = span / 5.0
    power = 10.0 ** np.floor(np.log10(raw))
    return float(max(m * power for m in (1, 2, 5) if m * power <= raw))


def _decorate(ax, view: str, limits, scale_bar: bool = True) -> None:
    """Axes in metres, limits, ego vehicle / sensor marker and scale bar."""
    from matplotlib.patches import Polygon, Rectangle
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    ax.set_xlim(limits[0], limits[1])
    ax.set_ylim(limits[2], limits[3])
    ax.set_xlabel("x (m, forward)")
    if view == "bev":
        ax.set_aspect("equal")
        ax.set_ylabel("y (m, left)")
        length, width = EGO_SIZE
        ax.add_patch(Rectangle((-length / 2, -width / 2), length, width, facecolor="white", edgecolor="black",
                               linewidth=1.2, zorder=5))
        nose = [(length / 2 - 1.2, width / 2 - 0.2), (length / 2 - 0.1, 0.0), (length / 2 - 1.2, -width / 2 + 0.2)]
        ax.add_patch(Polygon(nose, closed=True, facecolor="black", zorder=6))
        ax.annotate("ego", (0, -width / 2), xytext=(0, -3), textcoords="offset points", ha="center", va="top",
                    fontsize=8, zorder=6, bbox=dict(facecolor="white", alpha=0.8, linewidth=0, pad=0.5))
    else:
        ax.set_ylabel("z (m, up)")
        ax.plot([0], [0], marker=">", markersize=9, color="black", zorder=6, linestyle="none")
        ax.annotate("ego origin", (0, 0), xytext=(6, 4), textcoords="offset points", fontsize=8, zorder=6)
    ax.grid(True, linewidth=0.3, alpha=0.5)
    if scale_bar:
        span = limits[1] - limits[0]
        bar = _nice_length(span)
        thick = (limits[3] - limits[2]) / 120
        ax.add_artist(AnchoredSizeBar(ax.transData, bar, f"{bar:g} m", loc="lower right", pad=0.4, sep=3,
                                      frameon=True, size_vertical=thick, fontproperties={"size": 8}))


def _cluster_arrows(points: np.ndarray, motion: np.ndarray, labels: np.ndarray, min_speed: float):
    """``(centroids (K, 3), mean motions (K, 3))`` of the clusters (labels >= 0) that move."""
    cents, moves = [], []
    finite = np.isfinite(motion).all(1)
    for lab in np.unique(labels[labels >= 0]):
        sel = (labels == lab) & finite
        if sel.any():
            m = motion[sel].mean(0)
            if np.linalg.norm(m) >= min_speed:
                cents.append(points[sel].mean(0))
                moves.append(m)
    return np.reshape(cents, (-1, 3)), np.reshape(moves, (-1, 3))


def _draw_cloud(ax, xy, value, ground, vmax, min_speed, cmap, size, colour_ground=False):
    """Scatter one panel: NaN value lightest, ground light grey, slow points grey, the rest coloured by
    value (ground too when ``colour_ground``: the error panel shows wrong flow on the ground)."""
    nan = ~np.isfinite(value)
    slow = ~nan & (value < min_speed)
    grey_ground = ground & ~nan & (slow | (not colour_ground))
    grey = [(nan, NOFLOW_GREY), (grey_ground, GROUND_GREY), (slow & ~ground, STATIC_GREY)]
    for sel, colour in grey:
        if sel.any():
            ax.scatter(xy[sel, 0], xy[sel, 1], s=size * 0.15, c=colour, linewidths=0, rasterized=True)
    moving = ~nan & ~slow & ~grey_ground
    order = np.flatnonzero(moving)[np.argsort(value[moving], kind="stable")]  # fast points on top
    if len(order):
        ax.scatter(xy[order, 0], xy[order, 1], s=size, c=value[order], cmap=cmap, vmin=0.0, vmax=vmax,
                   linewidths=0, rasterized=True)
    return int(moving.sum())


def scene_flow_picture(pc1, flow, *, gt=None, valid=None, ego_motion=None, ground=None, labels=None,
                       view: str = "bev", extent=None, max_speed: float | None = None, min_speed: float = 0.05,
                       title: str | None = None, colormap: str = "viridis", panel_inches: float = 5.0,
                       point_size: float = 4.0, dpi: int = 100) -> np.ndarray:
    """Picture of a scene-flow estimate (and optionally its ground truth and error), see the module docstring.

    Args:
        pc1: ``(N, 3)`` metres, the points the flow is defined on.
        flow: ``(N, 3)`` metres per frame pair (NaN rows: no flow).
        gt: optional ``(N, 3)`` ground truth: adds a ground-truth and an error panel (``||flow - gt||``,
            errors under ``min_speed`` grey) with the EPE3D over ``valid`` points in the titles.
        valid: ``(N,)`` bool, points with ground truth (default: finite gt).
        ego_motion: ``(4, 4)`` pc1 -> pc2 frame; its flow is subtracted from ``flow`` and ``gt``.
        ground: ``(N,)`` bool ground points (default: ``labels == -2`` when labels are given).
        labels: ``(N,)`` int cluster per point (-1 none, -2 ground), e.g. ``result.extras["labels1"]``:
            draws the moving clusters' mean motions as arrows on the estimate panel.
        view: ``"bev"`` (bird's-eye, x right, y up) or ``"side"`` (x right, z up).
        extent: view half-width in metres, or ``(xmin, xmax, ymin, ymax)``; default: 90 % of the points
            and of the moving points, 10 to 50 m.
        max_speed: motion (m) at the top of the colour bar; default the 99th percentile of the moving
            points' motion over the panels (at least 0.5 m).
        min_speed: below this motion a point counts as static (grey).
        title: figure title (e.g. method and sample id).
        colormap: matplotlib colour map of the motion magnitude.
        panel_inches, point_size, dpi: panel size, marker area (pt^2) of moving points, resolution.

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    if view not in VIEWS:
        raise ShapeError(f"view: expected one of {', '.join(VIEWS)}, found {view!r}")
    p, f, motion, labels, ground, ego = scene_inputs(pc1, flow, labels, ground, ego_motion)
    n = len(p)
    panels = [("estimate", motion)]
    epe = None
    if gt is not None:
        g = _as_points("gt", gt, n)
        valid = _as_mask("valid", valid, n) if valid is not None else np.isfinite(g).all(1)
        err = np.linalg.norm(f - g, axis=1)
        err[~valid] = np.nan
        epe = float(np.nanmean(err[valid])) if valid.any() else float("nan")
        panels += [("ground truth", g - ego), ("error", err)]
    values = [np.linalg.norm(m, axis=1) if m.ndim == 2 else m for _, m in panels]
    moving = np.concatenate([v[np.isfinite(v) & (v >= min_speed) & ~ground] for v in values[:2]])
    if max_speed is None:
        max_speed = max(float(np.percentile(moving, 99)) if len(moving) else 0.0, 0.5)
    return _render(p, panels, values, ground, labels, view, extent, float(max_speed), min_speed, title, colormap,
                   panel_inches, point_size, dpi, epe, ego_motion is not None)


def _render(p, panels, values, ground, labels, view, extent, vmax, min_speed, title, cmap, inches, size, dpi, epe,
            ego_known):
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    axis2 = 1 if view == "bev" else 2
    # the view holds what moves in the estimate and in the ground truth (a mover the method missed stays in it)
    speeds = values[:2] if len(panels) > 1 else values[:1]
    focus = p[np.logical_or.reduce([np.isfinite(v) & (v >= min_speed) for v in speeds]) & ~ground]
    limits = list(_extent(p, focus, extent))
    if view == "side":
        z = p[np.isfinite(p).all(1), 2]
        lo, hi = (np.percentile(z, [0.5, 99.5]) if len(z) else (-2.0, 2.0))
        limits[2:] = [min(float(lo), -0.5) - 0.5, max(float(hi), 0.5) + 0.5]
    k = len(panels)
    if view == "bev":
        fig = new_figure(inches * k + 1.2, inches + 0.7, dpi)
        axes = fig.subplots(1, k, squeeze=False)[0]
    else:
        fig = new_figure(inches * 1.8 + 1.2, (inches * 0.45 + 0.4) * k + 0.5, dpi)
        axes = fig.subplots(k, 1, squeeze=False)[:, 0]
    xy = p[:, [0, axis2]]
    for ax, (name, _), value in zip(axes, panels, values):
        count = _draw_cloud(ax, xy, value, ground, vmax, min_speed, cmap, size, colour_ground=name == "error")
        head = name if name != "error" else f"error ||estimate - gt||, EPE3D {epe:.3f} m"
        if name == "estimate" and epe is not None:
            head = f"estimate (EPE3D {epe:.3f} m)"
        ax.set_title(f"{head}\n{count} points moving >= {min_speed:g} m" if name != "error"
                     else f"{head}\n{count} points off by >= {min_speed:g} m", fontsize=9)
        _decorate(ax, view, limits)
    if labels is not None:
        _arrows(axes[0], p, panels[0][1], labels, min_speed, axis2, limits)
    what = "motion vs. static world" if ego_known else "flow (ego motion not removed)"
    fig.colorbar(ScalarMappable(Normalize(0.0, vmax), cmap), ax=list(axes), shrink=0.85,
                 label=f"{what}, m per frame pair\n(grey: < {min_speed:g} m)")
    if title:
        fig.suptitle(title, fontsize=10)
    return figure_to_rgb(fig)


def _arrows(ax, p, motion, labels, min_speed, axis2, limits) -> None:
    cents, moves = _cluster_arrows(p, motion, labels, min_speed)
    if not len(cents):
        return
    span = limits[1] - limits[0]
    longest = float(np.linalg.norm(moves[:, [0, axis2]], axis=1).max())
    factor = next((f for f in (1, 2, 5, 10, 20, 50) if longest * f >= 0.04 * span), 50)
    ax.quiver(cents[:, 0], cents[:, axis2], moves[:, 0] * factor, moves[:, axis2] * factor, angles="xy",
              scale_units="xy", scale=1.0, color="crimson", width=0.006, zorder=7)
    ax.text(0.01, 0.99, f"arrows: {len(cents)} moving clusters, motion x{factor}", transform=ax.transAxes,
            va="top", fontsize=8, color="crimson", bbox=dict(facecolor="white", alpha=0.8, linewidth=0))


def sweeps_picture(points, sweep, *, extent=None, title: str | None = None, panel_inches: float = 6.0,
                   dpi: int = 100) -> np.ndarray:
    """Bird's-eye view of an accumulated cloud coloured by the sweep each point came from.

    Args:
        points: ``(N, 3)`` metres (every sweep carried into one frame).
        sweep: ``(N,)`` int sweep index per point (0 = oldest).

    Returns:
        ``(H, W, 3)`` uint8 RGB with a legend of the sweeps.
    """
    p = _as_points("points", points)
    s = _as_mask("sweep", sweep, len(p), dtype=np.int64)
    fig = new_figure(panel_inches + 1.6, panel_inches + 0.5, dpi)
    ax = fig.subplots()
    from matplotlib import colormaps

    sweeps = np.unique(s)
    cmap = colormaps["viridis"]
    for i, t in enumerate(sweeps):
        sel = s == t
        ax.scatter(p[sel, 0], p[sel, 1], s=1.5, color=cmap(i / max(len(sweeps) - 1, 1)), linewidths=0,
                   rasterized=True, label=f"sweep {t} ({int(sel.sum())} pts)")
    _decorate(ax, "bev", _extent(p, p[:0], extent))
    fig.legend(loc="outside right upper", fontsize=8, markerscale=5, frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    return figure_to_rgb(fig)


def result_overlays(result, num_points: int) -> dict:
    """What a :class:`~motionflow.types.SceneFlowResult` adds to a picture: ``ego_motion`` (estimated by
    the rigid methods or ``compensate_ego``) and the cluster ``labels`` of the rigid methods, scattered
    back to the caller's ``num_points`` pc1 points when preprocessing removed some (``extras["keep1"]``;
    removed points get -1). Keys are left out when the result has no such information."""
    extras = getattr(result, "extras", None) or {}
    out = {}
    if extras.get("ego_motion") is not None:
        out["ego_motion"] = np.asarray(extras["ego_motion"], dtype=np.float64)
    labels = extras.get("labels1")
    if labels is not None:
        labels = np.asarray(labels, dtype=np.int64)
        if len(labels) != num_points and extras.get("keep1") is not None:
            full = np.full(num_points, -1, dtype=np.int64)
            full[np.asarray(extras["keep1"])] = labels
            labels = full
        if len(labels) == num_points:
            out["labels"] = labels
    return out
