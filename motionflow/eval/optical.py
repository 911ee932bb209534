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

Defaults (:data:`PROTOCOLS`): Sintel pixel-pooled for everything; KITTI EPE image-mean and the rest
(Fl-all, px) pixel-pooled; any other dataset pixel-pooled. Both reductions are always reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ShapeError
from .accumulator import Accumulator

PX_THRESHOLDS = {"px1": 1.0, "px3": 3.0, "px5": 5.0}
FL_ABS_THRESHOLD = 3.0  # px (KITTI devkit ABS_THRESH)
FL_REL_THRESHOLD = 0.05  # 5 % of |gt| (KITTI devkit REL_THRESH)
SPEED_BINS = (("s0-10", 0.0, 10.0), ("s10-40", 10.0, 40.0), ("s40+", 40.0, float("inf")))
BASE_METRICS = ("epe", "px1", "px3", "px5", "fl_all")
REDUCTIONS = ("pixel", "image")


@dataclass(frozen=True)
class OpticalProtocol:
    """Which reduction each metric family uses by default, and whether Sintel names are added.

    Attributes:
        name: protocol name (the dataset family).
        reductions: base metric (``epe``, ``px1``, ...) -> ``"pixel"`` or ``"image"``; missing -> pixel.
        sintel_names: also report ``epe_matched`` / ``epe_unmatched`` (aliases of ``epe_noc`` /
            ``epe_occ``).
    """

    name: str
    reductions: dict = field(default_factory=dict)
    sintel_names: bool = False

    def reduction(self, base: str) -> str:
        return self.reductions.get(base, "pixel")


PROTOCOLS = {
    "sintel": OpticalProtocol("sintel", {}, sintel_names=True),
    "kitti2015": OpticalProtocol("kitti", {"epe": "image"}),
    "kitti2012": OpticalProtocol("kitti", {"epe": "image"}),
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


def _split_masks(valid: np.ndarray, occluded, magnitude: np.ndarray) -> dict:
    masks = {"all": valid}
    if occluded is not None:
        masks["noc"] = valid & ~occluded
        masks["occ"] = valid & occluded
    for name, lo, hi in SPEED_BINS:
        masks[name] = valid & (magnitude >= lo) & (magnitude < hi)
    return masks


def optical_flow_partial(pred, gt, valid, occluded=None) -> dict:
    """One sample's contribution to the dataset accumulator.

    Args:
        pred: ``(P, 2, H, W)`` predicted flows for the P scored pairs.
        gt: ``(P, 2, H, W)`` ground truth.
        valid: ``(P, H, W)`` bool, pixels with ground truth.
        occluded: ``(P, H, W)`` bool or None.

    Returns:
        ``{"sums": {key: float}, "counts": {key: int}}`` with, for every split ``S``: pixel sums
        ``S:epe``, ``S:px1`` ..., ``S:fl`` over ``S:n`` pixels, and image sums ``img:S:epe`` ... (sums
        of per-image means) over ``img:S:n`` images. Speed-bin splits carry EPE only.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    valid = np.asarray(valid, dtype=bool)
    if pred.shape != gt.shape or pred.ndim != 4 or pred.shape[1] != 2:
        raise ShapeError(f"optical_flow_partial: expected pred and gt (P, 2, H, W) of the same shape, found {pred.shape} and {gt.shape}")
    if valid.shape != (gt.shape[0],) + gt.shape[2:]:
        raise ShapeError(f"optical_flow_partial: expected valid of shape {(gt.shape[0],) + gt.shape[2:]}, found {valid.shape}")
    if occluded is not None:
        occluded = np.asarray(occluded, dtype=bool)
        if occluded.shape != valid.shape:
            raise ShapeError(f"optical_flow_partial: expected occluded of shape {valid.shape}, found {occluded.shape}")
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
        masks = _split_masks(valid[p], None if occluded is None else occluded[p], mag)
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
    stat = "fl" if base == "fl_all" else base
    scale = 100.0 if base == "fl_all" else 1.0
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


def optical_flow_metrics(acc: Accumulator, protocol: OpticalProtocol = PROTOCOLS["default"]) -> dict:
    """Dataset metrics from an accumulator of :func:`optical_flow_partial` contributions.

    Returns:
        ``{name: {"value": float, "reduction": "pixel" | "image", "alternatives": {other: float}}}``
        for ``epe px1 px3 px5 fl_all`` with suffixes ``""``, ``_noc``, ``_occ`` (only when every
        scored pair had an occlusion mask, :func:`occlusion_coverage`: splits pooled over a subset of
        the samples would not be comparable with the unsplit numbers) and ``epe_s0-10`` / ``epe_s10-40`` / ``epe_s40+``; Sintel protocols add
        ``epe_matched`` / ``epe_unmatched``. NaN where a split has no pixel.
    """
    out: dict = {}

    def put(name, split, base):
        red = protocol.reduction(base)
        values = {r: _metric(acc, split, base, r) for r in REDUCTIONS}
        other = [r for r in REDUCTIONS if r != red]
        out[name] = {"value": values[red], "reduction": red, "alternatives": {r: values[r] for r in other}}

    splits = [("all", "")]
    occlusion_splits = occlusion_coverage(acc) == "full"
    if occlusion_splits:
        splits += [("noc", "_noc"), ("occ", "_occ")]
    for split, suffix in splits:
        for base in BASE_METRICS:
            put(base + suffix, split, base)
    if protocol.sintel_names and occlusion_splits:
        put("epe_matched", "noc", "epe")
        put("epe_unmatched", "occ", "epe")
    for name, _, _ in SPEED_BINS:
        put(f"epe_{name}", name, "epe")
    return out
