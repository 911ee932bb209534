"""Scene-flow metrics: the NSFP / FNSF / SCOOP per-point metrics and the Argoverse 2 protocols.

Per point (NSFP ``utils.scene_flow_metrics``, copied verbatim by FNSF; DESIGN.md section 4):

* ``epe3d`` = mean ``||pred - gt||_2`` (metres);
* ``acc3d_strict`` = share with ``epe < 0.05`` or ``rel < 0.05``;
* ``acc3d_relax`` = share with ``epe < 0.1`` or ``rel < 0.1``;
* ``outliers`` = share with ``epe > 0.3`` or ``rel > 0.1``;
* ``rel = epe / (||gt|| + eps)`` with ``eps`` = :data:`NSFP_REL_EPS` (1e-20) by default;
  :data:`SCOOP_REL_EPS` (1e-4, SCOOP ``compute_epe_test``) and :data:`AV2_EPS` (1e-10) are available;
* ``angle_error`` (radians) = ``acos(clamp(<pred/|pred|, gt/|gt|>, -1 + 1e-7, 1 - 1e-7))`` with a NaN
  dot product (a zero vector on either side) replaced by 0, i.e. pi/2, exactly as NSFP does.

Reductions: ``sample`` = metric per sample over its scored points, then the mean over samples (NSFP,
FNSF, SCOOP: the default); ``point`` = pooled over every scored point of the dataset. We compute in
float64 (NSFP computes in float32 torch; differences are in the 7th significant digit).

Argoverse 2 "EPE 3-way" (``argoverse/av2-api`` ``evaluation/scene_flow``: ``eval.py``, ``utils.py``,
``constants.py``, ``torch/structures/flow.py``), matched here:

* eval points: ``is_valid`` and not ground and ``|x| <= 50 and |y| <= 50`` in the ego frame of the first
  sweep (``compute_eval_point_mask``; the leaderboard ships these masks in a zip, which we recompute);
* dynamic: the label file's ``is_dynamic`` column when it has one (the official annotation files
  carry it and ``eval.py`` reads it), else ``||gt - ego_flow|| >= 0.05`` m per 0.1 s sweep pair
  (``SCENE_FLOW_DYNAMIC_THRESHOLD``), with ``ego_flow = ego_motion @ p - p`` (``Flow.from_sweep_pair``),
  decided on the float32 ground truth;
* foreground: AV2 category index != 0 (``FOREGROUND_BACKGROUND_BREAKDOWN``: every one of the 30
  annotation categories, road signs included); background = index 0 (``NONE``);
* ``epe_threeway`` = mean of the EPE of foreground-dynamic, foreground-static and background-static
  points, each **count-weighted over the whole dataset** (``results_to_dict.weighted_average``, which
  weights per-frame means by their point counts: equal to pooling the points);
* the official annotation and submission files store flows as float16 (``make_annotation_files``,
  ``write_output_file``): with ``quantize_float16=True`` (default) both flows are rounded to float16
  before the EPE, as the leaderboard sees them.

Units: ``epe3d``, the 3-way parts and the bucketed static EPE in metres (per sweep pair); accuracies
and outliers as fractions; angles in radians; the bucketed dynamic EPE is a ratio (EPE over speed).

Bucketed normalized EPE (``kylevedder/BucketedSceneFlowEval`` ``eval/bucketed_epe.py`` and
``base_per_frame_sceneflow_eval.py``, the 2024 AV2 challenge), matched here:

* flows are ego-motion compensated (``gt - ego_flow``, ``pred - ego_flow``); speed = ``||gt - ego_flow||``
  in m/frame;
* 51 speed buckets: edges ``linspace(0, 2.0, 51)`` plus ``[2.0, inf)``, ``lo <= speed < hi``;
* points within ``max(|x|, |y|) < 35`` m (strict), valid and (when labelled) not ground;
* classes: the meta-categories ``BACKGROUND`` (index 0), ``CAR``, ``OTHER_VEHICLES``, ``PEDESTRIAN``,
  ``WHEELED_VRU`` (``av2_metacategories.BUCKETED_METACATAGORIES``); road signs, ANIMAL and DOG belong to
  none and are not scored;
* per (class, bucket): count-weighted mean EPE and mean speed over the dataset; static = the mean EPE
  of bucket 0; dynamic = the mean over non-empty buckets 1.. of ``mean EPE / mean speed``; the overall
  pair is the nan-mean over classes.
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..geometry import ego_flow
from .accumulator import Accumulator
from .units import metric_unit

NSFP_REL_EPS = 1e-20
SCOOP_REL_EPS = 1e-4
AV2_EPS = 1e-10
ANGLE_CLAMP_EPS = 1e-7
SCENE_METRICS = ("epe3d", "acc3d_strict", "acc3d_relax", "outliers", "angle_error")

# -- Argoverse 2 constants (av2-api evaluation/scene_flow/constants.py) ----------------------------
AV2_DYNAMIC_THRESHOLD = 0.05  # m per sweep pair
AV2_SWEEP_PAIR_TIME_DELTA = 0.1  # s
AV2_EVAL_BOX = 50.0  # |x| <= 50 and |y| <= 50
AV2_CATEGORIES = (
    "ANIMAL", "ARTICULATED_BUS", "BICYCLE", "BICYCLIST", "BOLLARD", "BOX_TRUCK", "BUS",
    "CONSTRUCTION_BARREL", "CONSTRUCTION_CONE", "DOG", "LARGE_VEHICLE", "MESSAGE_BOARD_TRAILER",
    "MOBILE_PEDESTRIAN_CROSSING_SIGN", "MOTORCYCLE", "MOTORCYCLIST", "OFFICIAL_SIGNALER", "PEDESTRIAN",
    "RAILED_VEHICLE", "REGULAR_VEHICLE", "SCHOOL_BUS", "SIGN", "STOP_SIGN", "STROLLER",
    "TRAFFIC_LIGHT_TRAILER", "TRUCK", "TRUCK_CAB", "VEHICULAR_TRAILER", "WHEELCHAIR", "WHEELED_DEVICE",
    "WHEELED_RIDER",
)  # av2.datasets.sensor.constants.AnnotationCategories, in enum order
AV2_CATEGORY_TO_INDEX = {"NONE": 0, **{name: i + 1 for i, name in enumerate(AV2_CATEGORIES)}}
THREEWAY_PARTS = ("fg_dynamic", "fg_static", "bg_static")

# -- BucketedSceneFlowEval constants --------------------------------------------------------------
BUCKET_MAX_SPEED = 2.0  # m/frame (20 m/s at 10 Hz)
BUCKET_EDGES = np.concatenate([np.linspace(0.0, BUCKET_MAX_SPEED, 51), [np.inf]])  # 52 edges, 51 buckets
BUCKET_DISTANCE = 35.0  # max(|x|, |y|) < 35
BUCKETED_META_CLASSES = {
    "BACKGROUND": ("NONE",),
    "CAR": ("REGULAR_VEHICLE",),
    "OTHER_VEHICLES": (
        "BOX_TRUCK", "LARGE_VEHICLE", "RAILED_VEHICLE", "TRUCK", "TRUCK_CAB", "VEHICULAR_TRAILER",
        "ARTICULATED_BUS", "BUS", "SCHOOL_BUS",
    ),
    "PEDESTRIAN": ("PEDESTRIAN", "STROLLER", "WHEELCHAIR", "OFFICIAL_SIGNALER"),
    "WHEELED_VRU": ("BICYCLE", "BICYCLIST", "MOTORCYCLE", "MOTORCYCLIST", "WHEELED_DEVICE", "WHEELED_RIDER"),
}


def _points(name: str, arr, n: int | None = None) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 3 or (n is not None and arr.shape[0] != n):
        want = f"({n}, 3)" if n is not None else "(N, 3)"
        raise ShapeError(f"{name}: expected shape {want}, found {arr.shape}")
    return arr


def _mask(name: str, arr, n: int) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.shape != (n,):
        raise ShapeError(f"{name}: expected shape ({n},), found {arr.shape}")
    return arr.astype(bool)


def angle_error(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-point 3-D angle (radians) between flows, NSFP style (see module docstring)."""
    pred = _points("angle_error pred", pred)
    gt = _points("angle_error gt", gt, len(pred))
    with np.errstate(invalid="ignore", divide="ignore"):
        unit_gt = gt / np.linalg.norm(gt, axis=1, keepdims=True)
        unit_pred = pred / np.linalg.norm(pred, axis=1, keepdims=True)
        dot = np.clip(np.sum(unit_gt * unit_pred, axis=1), -1 + ANGLE_CLAMP_EPS, 1 - ANGLE_CLAMP_EPS)
    dot[np.isnan(dot)] = 0.0
    return np.arccos(dot)


def scene_flow_point_errors(pred, gt, rel_eps: float = NSFP_REL_EPS) -> dict:
    """Per-point errors ``(N,)``: ``epe``, ``rel`` and the 0/1 flags of each NSFP metric, plus ``angle``."""
    pred = _points("scene flow pred", pred)
    gt = _points("scene flow gt", gt, len(pred))
    epe = np.linalg.norm(pred - gt, axis=1)
    rel = epe / (np.linalg.norm(gt, axis=1) + rel_eps)
    return {
        "epe3d": epe,
        "rel": rel,
        "acc3d_strict": (epe < 0.05) | (rel < 0.05),
        "acc3d_relax": (epe < 0.1) | (rel < 0.1),
        "outliers": (epe > 0.3) | (rel > 0.1),
        "angle_error": angle_error(pred, gt),
    }


def scene_flow_metrics_per_sample(pred, gt, rel_eps: float = NSFP_REL_EPS) -> dict:
    """The five NSFP metrics of one sample (means over its points), as floats."""
    errors = scene_flow_point_errors(pred, gt, rel_eps)
    if len(errors["epe3d"]) == 0:
        return {m: float("nan") for m in SCENE_METRICS}
    return {m: float(np.mean(errors[m])) for m in SCENE_METRICS}


def scene_flow_partial(pred, gt, mask=None, rel_eps: float = NSFP_REL_EPS) -> dict:
    """One sample's contribution: per-sample means (``sample:*``) and pooled sums (``point:*``).

    Args:
        pred, gt: ``(N, 3)`` flows on pc1's points.
        mask: ``(N,)`` bool, the points to score (default all).
        rel_eps: the ``eps`` in ``rel = epe / (||gt|| + eps)``.
    """
    pred = _points("scene flow pred", pred)
    gt = _points("scene flow gt", gt, len(pred))
    mask = np.ones(len(gt), bool) if mask is None else _mask("scene flow mask", mask, len(gt))
    mask = mask & np.isfinite(gt).all(axis=1)
    bad = mask & ~np.isfinite(pred).all(axis=1)
    if bad.any():
        raise ShapeError(f"scene flow prediction is not finite at {int(bad.sum())} scored points")
    errors = scene_flow_point_errors(pred[mask], gt[mask], rel_eps)
    n = int(mask.sum())
    sums = {f"point:{m}": float(np.sum(errors[m], dtype=np.float64)) for m in SCENE_METRICS}
    counts = {"point:n": n}
    if n > 0:
        for m in SCENE_METRICS:
            sums[f"sample:{m}"] = float(np.mean(errors[m], dtype=np.float64))
        counts["sample:n"] = 1
    return {"sums": sums, "counts": counts}


def scene_flow_metrics(acc: Accumulator, rel_eps: float = NSFP_REL_EPS) -> dict:
    """Dataset metrics: ``{name: {"value", "reduction": "sample", "alternatives": {"point": v}, "eps"}}``."""
    out = {}
    for m in SCENE_METRICS:
        entry = {
            "value": acc.ratio(f"sample:{m}", "sample:n"),
            "reduction": "sample",
            "unit": metric_unit(m, "scene"),
            "alternatives": {"point": acc.ratio(f"point:{m}", "point:n")},
        }
        if m in ("acc3d_strict", "acc3d_relax", "outliers"):
            entry["eps"] = rel_eps
        if m == "angle_error":
            entry["eps"] = ANGLE_CLAMP_EPS
        out[m] = entry
    return out


# -- Argoverse 2 ---------------------------------------------------------------------------------
def ego_motion_flow(pc1, ego_motion) -> np.ndarray:
    """``(N, 3)`` float64 flow of static points: ``ego_motion @ p - p`` (ego_motion ``(4, 4)`` maps pc1 to
    pc2's frame; :func:`motionflow.geometry.ego_flow`). ``ego_motion=None`` means the sweeps share a frame
    (zero ego flow): callers that cannot know that refuse before (the AV2 protocol, see ``av2_threeway_partial``)."""
    pc1 = _points("pc1", pc1)
    if ego_motion is None:
        return np.zeros_like(pc1)
    return ego_flow(pc1, ego_motion, name="pc1")


def av2_eval_mask(pc1, valid=None, ground=None, box: float = AV2_EVAL_BOX) -> np.ndarray:
    """AV2 eval points: valid, not ground, ``|x| <= box and |y| <= box`` (``compute_eval_point_mask``)."""
    pc1 = _points("pc1", pc1)
    n = len(pc1)
    mask = (np.abs(pc1[:, 0]) <= box) & (np.abs(pc1[:, 1]) <= box)
    if valid is not None:
        mask &= _mask("valid", valid, n)
    if ground is not None:
        mask &= ~_mask("ground", ground, n)
    return mask


def _av2_inputs(pred, gt, pc1, classes):
    """Check and convert the per-point inputs of the AV2 protocols: (pred, gt, pc1) (N, 3), classes (N,)."""
    pc1 = _points("pc1", pc1)
    n = len(pc1)
    pred = _points("scene flow pred", pred, n)
    gt = _points("scene flow gt", gt, n)
    classes = np.asarray(classes)
    if classes.shape != (n,):
        raise ShapeError(f"classes: expected shape ({n},), found {classes.shape}")
    return pred, gt, pc1, classes


def av2_threeway_partial(pred, gt, pc1, classes, ego_motion=None, valid=None, ground=None, quantize_float16: bool = True,
                         dynamic=None) -> dict:
    """One sample's contribution to the AV2 EPE 3-way: ``av2:{part}:epe`` sums over ``av2:{part}:n`` points.

    ``dynamic`` ``(N,)`` bool: the labels' ``is_dynamic`` (used as given); None computes it from the
    ground truth and ``ego_motion`` (which must then be given: without it every static point would move).
    """
    pred, gt, pc1, classes = _av2_inputs(pred, gt, pc1, classes)
    mask = av2_eval_mask(pc1, valid, ground) & np.isfinite(gt).all(axis=1)
    if (mask & ~np.isfinite(pred).all(axis=1)).any():
        raise ShapeError("scene flow prediction is not finite at AV2 eval points")
    if dynamic is not None:
        dynamic = _mask("dynamic", dynamic, len(pc1))
    elif ego_motion is None:
        raise ShapeError("av2_threeway_partial: expected ego_motion (4, 4) or dynamic labels to split static from "
                         "dynamic points, found neither")
    else:
        dynamic = np.linalg.norm(gt - ego_motion_flow(pc1, ego_motion), axis=1) >= AV2_DYNAMIC_THRESHOLD
    if quantize_float16:
        gt = gt.astype(np.float16).astype(np.float64)
        pred = pred.astype(np.float16).astype(np.float64)
    epe = np.linalg.norm(pred - gt, axis=1)
    fg = classes != 0
    parts = {"fg_dynamic": fg & dynamic, "fg_static": fg & ~dynamic, "bg_static": ~fg & ~dynamic}
    sums, counts = {}, {}
    for part, m in parts.items():
        m = m & mask
        sums[f"av2:{part}:epe"] = float(np.sum(epe[m]))
        counts[f"av2:{part}:n"] = int(m.sum())
    return {"sums": sums, "counts": counts}


def av2_threeway_metrics(acc: Accumulator) -> dict:
    """``epe_threeway`` and its three parts, count-weighted over the dataset (reduction ``point``)."""
    parts = {p: acc.ratio(f"av2:{p}:epe", f"av2:{p}:n") for p in THREEWAY_PARTS}
    out = {"epe_threeway": {"value": float(np.mean(list(parts.values()))), "reduction": "point",
                            "unit": metric_unit("epe_threeway", "scene")}}
    for p, v in parts.items():
        out[f"epe_{p}"] = {"value": v, "reduction": "point", "unit": metric_unit(f"epe_{p}", "scene"), "count": acc.n(f"av2:{p}:n")}
    return out


def _meta_class_of_index() -> dict:
    lookup = {}
    for meta, names in BUCKETED_META_CLASSES.items():
        for name in names:
            lookup[AV2_CATEGORY_TO_INDEX[name]] = meta
    return lookup


_META_OF_INDEX = _meta_class_of_index()
_META_NAMES = sorted(BUCKETED_META_CLASSES)
# AV2 category index -> position in _META_NAMES, -1 for categories in no meta class (road signs, animals)
_META_LOOKUP = np.array(
    [_META_NAMES.index(_META_OF_INDEX[i]) if i in _META_OF_INDEX else -1 for i in range(len(AV2_CATEGORY_TO_INDEX))],
    dtype=np.int64,
)


def bucketed_partial(pred, gt, pc1, classes, ego_motion=None, valid=None, ground=None, distance: float = BUCKET_DISTANCE) -> dict:
    """One sample's contribution to the bucketed normalized EPE: ``bkt:{class}:{b}:epe|speed`` over ``:n``."""
    pred, gt, pc1, classes = _av2_inputs(pred, gt, pc1, classes)
    n = len(pc1)
    mask = np.max(np.abs(pc1[:, :2]), axis=1) < distance
    mask &= np.isfinite(gt).all(axis=1)
    if valid is not None:
        mask &= _mask("valid", valid, n)
    if ground is not None:
        mask &= ~_mask("ground", ground, n)
    if (mask & ~np.isfinite(pred).all(axis=1)).any():
        raise ShapeError("scene flow prediction is not finite at bucketed-eval points")
    ego = ego_motion_flow(pc1, ego_motion)
    gt_c = gt - ego
    pred_c = pred - ego
    speed = np.linalg.norm(gt_c, axis=1)
    epe = np.linalg.norm(pred_c - gt_c, axis=1)
    bucket = np.searchsorted(BUCKET_EDGES, speed, side="right") - 1  # edges[b] <= speed < edges[b+1]
    meta = _META_LOOKUP[np.clip(classes.astype(np.int64), 0, len(_META_LOOKUP) - 1)]
    meta[(classes < 0) | (classes >= len(_META_LOOKUP))] = -1  # unknown category indices: no meta class
    sel = mask & (meta >= 0)
    nb = len(BUCKET_EDGES) - 1
    cell = meta[sel] * nb + bucket[sel]  # (meta class, bucket) as one index
    size = len(_META_NAMES) * nb
    n_cell = np.bincount(cell, minlength=size)
    epe_cell = np.bincount(cell, weights=epe[sel], minlength=size)
    speed_cell = np.bincount(cell, weights=speed[sel], minlength=size)
    sums, counts = {}, {}
    for c in np.flatnonzero(n_cell):
        key = f"bkt:{_META_NAMES[c // nb]}:{c % nb}"
        sums[f"{key}:epe"] = float(epe_cell[c])
        sums[f"{key}:speed"] = float(speed_cell[c])
        counts[f"{key}:n"] = int(n_cell[c])
    return {"sums": sums, "counts": counts}


def bucketed_metrics(acc: Accumulator) -> dict:
    """Per-class (static EPE, dynamic normalized EPE) and their nan-means over classes (reduction ``class``)."""
    out = {}
    statics, dynamics = [], []
    num_buckets = len(BUCKET_EDGES) - 1
    for meta in sorted(BUCKETED_META_CLASSES):
        static = acc.ratio(f"bkt:{meta}:0:epe", f"bkt:{meta}:0:n")
        normalized = []
        for b in range(1, num_buckets):
            key = f"bkt:{meta}:{b}"
            if acc.n(f"{key}:n") > 0:
                # mean EPE / mean speed over the same points = sum EPE / sum speed
                normalized.append(acc.total(f"{key}:epe") / acc.total(f"{key}:speed"))
        dynamic = float(np.mean(normalized)) if normalized else float("nan")
        statics.append(static)
        dynamics.append(dynamic)
        for name, value in ((f"bucketed_static_epe/{meta}", static), (f"bucketed_dynamic_norm_epe/{meta}", dynamic)):
            out[name] = {"value": value, "reduction": "point", "unit": metric_unit(name, "scene")}

    def nanmean(values):
        values = [v for v in values if not np.isnan(v)]
        return float(np.mean(values)) if values else float("nan")

    for name, values in (("bucketed_static_epe", statics), ("bucketed_dynamic_norm_epe", dynamics)):
        out[name] = {"value": nanmean(values), "reduction": "class", "unit": metric_unit(name, "scene")}
    return out
