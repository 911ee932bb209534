"""Pictures of evaluated samples (``motionflow eval --viz N``) and their Rerun recording (``--rerun FILE.rrd``).

The evaluation writes, for each of the first N samples it scores (in whichever process scores it), into
one folder beside the report:

* ``sample_XXXXX.png`` -- lidar: :func:`~motionflow.viz.points.scene_flow_picture` of the prediction with
  the ground-truth and error panels (motion relative to the static world when the sample has an ego
  motion); optical flow: the first pair's flow picture beside its EPE map;
* ``sample_XXXXX.json`` -- the sample id, its index and the caption (the sample's headline metric);
* ``sample_XXXXX.npz`` -- lidar, when a recording is asked for: pc1, pc2, flow, gt, valid, ego motion and
  ground labels, which :func:`log_sample_views` turns into one ``.rrd`` in the driver process.

File names come from the sample's index, never from its id (an id is data: it may hold ``../``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

PREFIX = "sample_"
#: the headline metric of each kind in captions
HEADLINE = {"scene": ("epe3d", "EPE3D", "m"), "optical": ("epe", "EPE", "px")}


def _stem(index: int) -> str:
    return f"{PREFIX}{int(index):05d}"


def _picture(sample, pred, title: str, valid=None) -> np.ndarray:
    if hasattr(sample, "pc1"):
        from .points import scene_flow_picture

        valid = sample.valid if valid is None else valid
        return scene_flow_picture(sample.pc1, pred, gt=sample.flow, valid=valid, ego_motion=sample.ego_motion,
                                  ground=sample.ground1, title=title, panel_inches=4.5)
    from .annotate import hstack
    from .color import flow_picture
    from .error import epe_picture

    flow = np.asarray(pred)[0]
    if sample.flow is None:
        return flow_picture(flow)
    return hstack(flow_picture(flow), epe_picture(flow, sample.flow[0], sample.valid[0]))


def write_sample_view(folder, index: int, sample, pred, metrics: dict | None = None, arrays: bool = False,
                      valid=None) -> Path:
    """Write the picture (and caption, and for lidar with ``arrays`` the recording data) of one scored
    sample into ``folder``; returns the picture's path.

    Args:
        sample: a :class:`~motionflow.types.SceneFlowSample` or :class:`~motionflow.types.FlowSample`.
        pred: its prediction: ``(N, 3)`` scene flow on ``sample.pc1``, or ``(P, 2, H, W)`` optical flows.
        metrics: the sample's metrics (plain values); the headline one goes into the caption.
        valid: scene flow: ``(N,)`` bool, the points the metrics score (the error panel's EPE3D is
            over these, so it matches the caption); default ``sample.valid``.
    """
    from ..io import atomic_write_bytes, write_image
    from ..io.strict_json import strict_dumps

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    scene = hasattr(sample, "pc1")
    key, label, unit = HEADLINE["scene" if scene else "optical"]
    value = (metrics or {}).get(key)
    headline = f"{label} {value:.4g} {unit}" if isinstance(value, (int, float)) and np.isfinite(value) else ""
    caption = f"{sample.id}" + (f": {headline}" if headline else "")
    stem = _stem(index)
    picture = folder / f"{stem}.png"
    write_image(picture, _picture(sample, pred, caption, valid))
    if scene and arrays:
        data = {"pc1": sample.pc1, "pc2": sample.pc2, "flow": np.asarray(pred, np.float32)}
        extra = {"gt": sample.flow, "valid": sample.valid, "ego_motion": sample.ego_motion, "ground": sample.ground1}
        data.update({k: v for k, v in extra.items() if v is not None})
        from ..io import atomic_path

        with atomic_path(folder / f"{stem}.npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **data)
    meta = {"index": int(index), "id": str(sample.id), "caption": caption, "metrics": metrics or {}}
    atomic_write_bytes(folder / f"{stem}.json", strict_dumps(meta).encode())
    return picture


def read_sample_views(folder) -> list[dict]:
    """The views written into ``folder``, by sample index: dicts with ``index``, ``id``, ``caption``,
    ``metrics``, ``picture`` (Path) and ``arrays`` (Path or None)."""
    folder = Path(folder)
    views = []
    for meta_path in sorted(folder.glob(f"{PREFIX}[0-9]*.json")):
        meta = json.loads(meta_path.read_text())
        picture, arrays = meta_path.with_suffix(".png"), meta_path.with_suffix(".npz")
        if picture.exists():
            views.append({**meta, "picture": picture, "arrays": arrays if arrays.exists() else None})
    return sorted(views, key=lambda v: v["index"])


def log_sample_views(views, path) -> int:
    """Write the lidar views that have arrays into the Rerun recording ``path`` (one ``sample`` step per
    view: both clouds, flow arrows, ground-truth arrows, errors, the metrics). Returns how many."""
    from .rerun_log import log_scene_flow, recording

    logged = 0
    with recording(path) as rec:
        for view in views:
            if view.get("arrays") is None:
                continue
            with np.load(view["arrays"], allow_pickle=False) as z:
                d = {k: z[k] for k in z.files}
            log_scene_flow(rec, view["index"], d["pc1"], d["pc2"], d["flow"], gt=d.get("gt"), valid=d.get("valid"),
                           ego_motion=d.get("ego_motion"), ground=d.get("ground"),
                           metrics={k: v for k, v in view.get("metrics", {}).items() if isinstance(v, (int, float))})
            logged += 1
    return logged
