"""Optical-flow metrics, exactly as the devkits and the reference code compute them.

Per pixel (DESIGN.md section 4):

* ``epe`` = ``||pred - gt||_2`` in pixels;
* ``px1`` / ``px3`` / ``px5`` = share of valid pixels with ``epe < 1`` / ``< 3`` / ``< 5`` (fractions,
  strict ``<`` as in RAFT's ``evaluate.py``);
* ``fl_all`` = percent of valid pixels with ``epe > 3`` **and** ``epe > 0.05 * ||gt||`` (KITTI devkit
  ``flowErrorsOutlier``; RAFT writes ``epe / mag > 0.05``, identical except for 0/0, which never
  passes the ``epe > 3`` test anyway).

Splits (suffixes): none = every valid pixel (KITTI "All", ``flow_occ``); ``_noc`` = valid and not
occluded (KITTI ``flow_noc``, Sintel "matched"); ``_occ`` = valid and occluded only (Sintel
"unmatched"); ``_s0-10`` / ``_s10-40`` / ``_s40+`` = EPE of valid pixels with ``||gt||`` in
``[0, 10)``, ``[10, 40)``, ``[40, inf)`` px/frame (Sintel speed bins). Sintel protocols also name the
occlusion splits ``epe_matched`` / ``epe_unmatched`` as the Sintel website does.

Reductions (every reported number carries one):

* ``pixel``: pool every valid pixel of the dataset, ``sum(epe) / count`` (Sintel EPE in RAFT /
  VideoFlow / StreamFlow; KITTI Fl-all in the devkit and all of those; mmflow for everything);
* ``image``: mean over pixels of each image (flow pair), then mean over images (KITTI EPE in RAFT's
  ``validate_kitti``; ptlflow for everything). An image with no valid pixel in a split does not
  count towards that split's image mean.

Defaults (:data:`PROTOCOLS`, the metric families): Sintel pixel-pooled for everything; KITTI 2015 EPE
image-mean and the rest (Fl-all, px) pixel-pooled; any other dataset pixel-pooled. Both reductions are
always reported.

KITTI 2015 adds the devkit's ``fl_bg`` / ``fl_fg`` (Fl over background / foreground pixels of
``obj_map``, and their ``_noc``) when every scored pair has an object map. KITTI 2012 reports what its
devkit (``evaluate_flow.cpp``) reports instead of Fl and px: ``out2`` .. ``out5`` = percent of valid
pixels with ``epe > tau`` px (strict, no relative clause) over ``flow_occ`` ("Out-All") and ``_noc``
("Out-Noc"), and ``epe`` / ``epe_noc`` ("Avg-All" / "Avg-Noc"), all image-mean (the devkit averages the
per-image values over images; pixel-pooled is the alternative).

Units (:mod:`.units`): ``epe*`` px; ``px*`` fraction; ``fl_*`` and ``out*`` percent (each metric entry has ``unit``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ShapeError
from .accumulator import Accumulator
from .units import metric_unit

PX_THRESHOLDS = {"px1": 1.0, "px3": 3.0, "px5": 5.0}
FL_ABS_THRESHOLD = 3.0  # px (KITTI devkit ABS_THRESH)
FL_REL_THRESHOLD = 0.05  # 5 % of |gt| (KITTI devkit REL_THRESH)
SPEED_BINS = (("s0-10", 0.0, 10.0), ("s10-40", 10.0, 40.0), ("s40+", 40.0, float("inf")))
BASE_METRICS = ("epe", "px1", "px3", "px5", "fl_all")
KITTI2012_METRICS = ("epe", "out2", "out3", "out4", "out5")
KITTI2012_OUTLIER_PX = (2, 3, 4, 5)
REDUCTIONS = ("pixel", "image")


@dataclass(frozen=True)
class OpticalProtocol:
    """A metric family: which metrics, with which default reduction.

    Attributes:
        name: family name.
        reductions: base metric (``epe``, ``px1``, ...) -> ``"pixel"`` or ``"image"``; missing -> ``default_reduction``.
        sintel_names: also report ``epe_matched`` / ``epe_unmatched`` (aliases of ``epe_noc`` /
            ``epe_occ``).
        base_metrics: the metrics reported for each split.
        outlier_px: thresholds of ``out<tau>`` (epe > tau px) counted per pixel.
        fg_bg: report ``fl_bg`` / ``fl_fg`` from the samples' ``meta["foreground"]``.
        speed_bins: report ``epe_s0-10`` .. ``epe_s40+``.
        default_reduction: reduction of the metrics ``reductions`` does not name.
    """

    name: str
    reductions: dict = field(default_factory=dict)
    sintel_names: bool = False
    base_metrics: tuple = BASE_METRICS
    outlier_px: tuple = ()
    fg_bg: bool = False
    speed_bins: bool = True
    default_reduction: str = "pixel"

    def reduction(self, base: str) -> str:
        return self.reductions.get(base, self.default_reduction)


PROTOCOLS = {
    "sintel": OpticalProtocol("sintel", {}, sintel_names=True),
    "kitti2015": OpticalProtocol("kitti", {"epe": "image"}, fg_bg=True),
    "kitti2012": OpticalProtocol("kitti2012", {}, base_metrics=KITTI2012_METRICS, outlier_px=KITTI2012_OUTLIER_PX,
                                 speed_bins=False, default_reduction="image"),
    "default": OpticalProtocol("default", {}),
}


def endpoint_error(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-pixel end-point error ``(..., H, W)`` float64 of flows ``(..., 2, H, W)``."""
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or pred.ndim < 3 or pred.shape[-3] != 2:
        raise ShapeError(f"endpoint_error: expected pred and gt of the same shape (..., 2, H, W), found {pred.shape} and {gt.shape}")
    du = pred[..., 0, :, :] - gt[..., 0, :, :]
    dv = pred[..., 1, :, :] - gt[..., 1, :, :]
    return np.sqrt(du * du + dv * dv)


def flow_outliers(epe: np.ndarray, gt_magnitude: np.ndarray) -> np.ndarray:
    """KITTI Fl outlier flags: ``epe > 3 px`` and ``epe > 5 % of |gt|``."""
    return (epe > FL_ABS_THRESHOLD) & (epe > FL_REL_THRESHOLD * gt_magnitude)


def _split_masks(valid: np.ndarray, occluded, magnitude: np.ndarray, foreground=None) -> dict:
    masks = {"all": valid}
    if occluded is not None:
        masks["noc"] = valid & ~occluded
        masks["occ"] = valid & occluded
    if foreground is not None:
        masks["fg"] = valid & foreground
        masks["bg"] = valid & ~foreground
        if occluded is not None:
            masks["fg_noc"] = masks["fg"] & ~occluded
            masks["bg_noc"] = masks["bg"] & ~occluded
    for name, lo, hi in SPEED_BINS:
        masks[name] = valid & (magnitude >= lo) & (magnitude < hi)
    return masks


def _mask_arg(name: str, arr, shape) -> np.ndarray:
    arr = np.asarray(arr, dtype=bool)
    if arr.shape != shape:
        raise ShapeError(f"optical_flow_partial: expected {name} of shape {shape}, found {arr.shape}")
    return arr


def optical_flow_partial(pred, gt, valid, occluded=None, foreground=None, outlier_px=()) -> dict:
    """One sample's contribution to the dataset accumulator.

    Args:
        pred: ``(P, 2, H, W)`` predicted flows for the P scored pairs.
        gt: ``(P, 2, H, W)`` ground truth.
        valid: ``(P, H, W)`` bool, pixels with ground truth.
        occluded: ``(P, H, W)`` bool or None.
        foreground: ``(P, H, W)`` bool (KITTI ``obj_map > 0``) or None: adds splits ``fg``, ``bg``
            (and ``fg_noc``, ``bg_noc`` with ``occluded``).
        outlier_px: thresholds ``tau``: adds the count ``out<tau>`` of pixels with ``epe > tau``.

    Returns:
        ``{"sums": {key: float}, "counts": {key: int}}`` with, for every split ``S``: pixel sums
        ``S:epe``, ``S:px1`` ..., ``S:fl`` (and ``S:out<tau>``) over ``S:n`` pixels, and image sums
        ``img:S:epe`` ... (sums of per-image means) over ``img:S:n`` images. Speed-bin splits carry EPE only.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    valid = np.asarray(valid, dtype=bool)
    if pred.shape != gt.shape or pred.ndim != 4 or pred.shape[1] != 2:
        raise ShapeError(f"optical_flow_partial: expected pred and gt (P, 2, H, W) of the same shape, found {pred.shape} and {gt.shape}")
    if valid.shape != (gt.shape[0],) + gt.shape[2:]:
        raise ShapeError(f"optical_flow_partial: expected valid of shape {(gt.shape[0],) + gt.shape[2:]}, found {valid.shape}")
    if occluded is not None:
        occluded = _mask_arg("occluded", occluded, valid.shape)
    if foreground is not None:
        foreground = _mask_arg("foreground", foreground, valid.shape)
    valid = valid & np.isfinite(gt).all(axis=1)
    bad = valid & ~np.isfinite(pred).all(axis=1)
    if bad.any():
        raise ShapeError(f"optical_flow_partial: prediction is not finite at {int(bad.sum())} valid pixels")
    sums: dict = {}
    counts: dict = {}

    def add(key, value):
        sums[key] = sums.get(key, 0.0) + float(value)

    for p in range(gt.shape[0]):
        epe = endpoint_error(pred[p], gt[p])
        mag = np.sqrt(np.sum(np.asarray(gt[p], dtype=np.float64) ** 2, axis=0))
        flags = {name: epe < thr for name, thr in PX_THRESHOLDS.items()}
        flags["fl"] = flow_outliers(epe, mag)
        for tau in outlier_px:
            flags[f"out{int(tau)}"] = epe > float(tau)  # KITTI 2012 devkit: f_err > tau, no relative clause
        masks = _split_masks(valid[p], None if occluded is None else occluded[p], mag,
                             None if foreground is None else foreground[p])
        for split, mask in masks.items():
            n = int(np.count_nonzero(mask))
            counts[f"{split}:n"] = counts.get(f"{split}:n", 0) + n
            stats = {"epe": float(np.sum(np.where(mask, epe, 0.0)))}  # NaN/inf outside the split never leak in
            if not split.startswith("s"):  # speed bins carry EPE only
                for name, flag in flags.items():
                    stats[name] = float(np.count_nonzero(flag & mask))
            for name, value in stats.items():
                add(f"{split}:{name}", value)
            if n > 0:
                counts[f"img:{split}:n"] = counts.get(f"img:{split}:n", 0) + 1
                for name, value in stats.items():
                    add(f"img:{split}:{name}", value / n)
    # one float per key per sample: the JSONL record stores exactly this, so a resumed run
    # rebuilds bit-identical dataset totals
    return {"sums": sums, "counts": counts}


def _metric(acc: Accumulator, split: str, base: str, reduction: str) -> float:
    stat = "fl" if base.startswith("fl_") else base
    scale = 100.0 if base.startswith(("fl_", "out")) else 1.0  # percentages
    if reduction == "pixel":
        return acc.ratio(f"{split}:{stat}", f"{split}:n", scale)
    return acc.ratio(f"img:{split}:{stat}", f"img:{split}:n", scale)


def occlusion_coverage(acc: Accumulator) -> str:
    """``"full"`` when every scored pair had an occlusion mask, ``"partial"`` when only some had one,
    ``"none"`` when none had.

    A pair with a mask splits each of its valid pixels into ``noc`` or ``occ``; a pair without one
    adds to ``all`` only. So the masks covered every scored pair exactly when ``noc + occ == all``.
    """
    if "noc:n" not in acc.counts:
        return "none"
    return "full" if acc.n("noc:n") + acc.n("occ:n") == acc.n("all:n") else "partial"


def foreground_coverage(acc: Accumulator) -> bool:
    """Whether every scored pair had an object map (``fg + bg == all``, and some pixel at all)."""
    return "fg:n" in acc.counts and acc.n("fg:n") + acc.n("bg:n") == acc.n("all:n")


def optical_flow_metrics(acc: Accumulator, protocol: OpticalProtocol = PROTOCOLS["default"]) -> dict:
    """Dataset metrics from an accumulator of :func:`optical_flow_partial` contributions.

    Returns:
        ``{name: {"value": float, "reduction": "pixel" | "image", "unit": ..., "alternatives": {other: float}}}``
        for the family's base metrics (``epe px1 px3 px5 fl_all``; KITTI 2012 ``epe out2 .. out5``)
        with suffixes ``""``, ``_noc``, ``_occ`` (only when every scored pair had an occlusion mask,
        :func:`occlusion_coverage`: splits pooled over a subset of the samples would not be
        comparable with the unsplit numbers; KITTI 2012 reports no ``_occ``) and ``epe_s0-10`` /
        ``epe_s10-40`` / ``epe_s40+``; Sintel protocols add ``epe_matched`` / ``epe_unmatched``;
        KITTI 2015 ``fl_bg`` / ``fl_fg`` (and ``_noc``) when every pair had an object map. NaN where
        a split has no pixel.
    """
    out: dict = {}

    def put(name, split, base):
        red = protocol.reduction(base)
        values = {r: _metric(acc, split, base, r) for r in REDUCTIONS}
        other = [r for r in REDUCTIONS if r != red]
        out[name] = {"value": values[red], "reduction": red, "unit": metric_unit(name, "optical"),
                     "alternatives": {r: values[r] for r in other}}

    splits = [("all", "")]
    occlusion_splits = occlusion_coverage(acc) == "full"
    if occlusion_splits:
        splits += [("noc", "_noc")] + ([] if protocol.name == "kitti2012" else [("occ", "_occ")])
    for split, suffix in splits:
        for base in protocol.base_metrics:
            put(base + suffix, split, base)
    if protocol.sintel_names and occlusion_splits:
        put("epe_matched", "noc", "epe")
        put("epe_unmatched", "occ", "epe")
    if protocol.fg_bg and foreground_coverage(acc):
        for part in ("bg", "fg"):
            put(f"fl_{part}", part, "fl_all")
            if occlusion_splits:
                put(f"fl_{part}_noc", f"{part}_noc", "fl_all")
    if protocol.speed_bins:
        for name, _, _ in SPEED_BINS:
            put(f"epe_{name}", name, "epe")
    return out
