"""Hand-computed values for every metric, split and reduction; exact, order-independent accumulation."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from motionflow.errors import ShapeError
from motionflow.eval.accumulator import Accumulator, exact_to_float, float_to_exact
from motionflow.eval.optical import PROTOCOLS, occlusion_coverage, optical_flow_metrics, optical_flow_partial
from motionflow.eval.scene import (
    AV2_CATEGORY_TO_INDEX,
    BUCKET_EDGES,
    av2_threeway_metrics,
    av2_threeway_partial,
    bucketed_metrics,
    bucketed_partial,
    scene_flow_metrics,
    scene_flow_metrics_per_sample,
    scene_flow_partial,
)


# -- accumulator -----------------------------------------------------------------------------------
def test_exact_sum_is_order_independent_and_correctly_rounded():
    rng = random.Random(0)
    values = [rng.uniform(-1, 1) * 10 ** rng.randint(-12, 12) for _ in range(2000)]
    totals = set()
    for _ in range(5):
        rng.shuffle(values)
        acc = Accumulator()
        for v in values:
            acc.add("x", v)
        totals.add(acc.total("x"))
    assert totals == {math.fsum(values)}  # one value, the exactly rounded sum
    # a naive float sum differs with the order for these values (the reason for exact sums)
    naive = {sum(rng.sample(values, len(values))) for _ in range(5)}
    assert len(naive) > 1


def test_accumulator_merge_in_pieces_equals_single_pass_and_roundtrips():
    rng = np.random.default_rng(1)
    parts = [{"sums": {"a": float(rng.normal() * 1e3), "b": float(rng.random())}, "counts": {"n": int(rng.integers(1, 9))}} for _ in range(50)]
    single = Accumulator.merged(Accumulator.from_partial(p) for p in parts)
    chunks = [Accumulator.merged(Accumulator.from_partial(p) for p in parts[i::3]) for i in range(3)]
    merged = Accumulator.merged(reversed(chunks))
    assert merged == single
    assert merged.ratio("a", "n") == single.ratio("a", "n")
    again = Accumulator.from_dict(merged.to_dict())
    assert again == single
    assert math.isnan(Accumulator().ratio("a", "n"))
    assert exact_to_float(float_to_exact(0.1)) == 0.1
    with pytest.raises(ShapeError, match="finite"):
        float_to_exact(float("nan"))


# -- optical flow ----------------------------------------------------------------------------------
def _optical_case():
    """Two 1x4 images. A: all valid; B: first two pixels valid (the rest hold garbage predictions)."""
    gt = np.zeros((2, 2, 1, 4), np.float32)
    pred = np.zeros((2, 2, 1, 4), np.float32)
    # image A: gt u = [0, 0, 10, 100]; pred u = [0.5, 2, 14, 104] -> epe [0.5, 2, 4, 4]
    gt[0, 0, 0] = [0, 0, 10, 100]
    pred[0, 0, 0] = [0.5, 2, 14, 104]
    # image B: gt (3, 4) |5| and (30, 40) |50|; errors (6, 8) -> 10 and (0, 2) -> 2
    gt[1, :, 0, 0] = [3, 4]
    pred[1, :, 0, 0] = [9, 12]
    gt[1, :, 0, 1] = [30, 40]
    pred[1, :, 0, 1] = [30, 42]
    pred[1, :, 0, 2] = np.inf  # garbage where there is no ground truth must not matter
    pred[1, :, 0, 3] = np.nan
    gt[1, :, 0, 3] = np.nan
    valid = np.array([[[True] * 4], [[True, True, False, False]]])
    occluded = np.array([[[False, False, True, False]], [[True, False, False, False]]])
    return pred, gt, valid, occluded


EXPECTED_OPTICAL = {
    # name: (pixel-pooled, image-mean)
    "epe": (22.5 / 6, (10.5 / 4 + 6) / 2),
    "px1": (1 / 6, (1 / 4 + 0) / 2),
    "px3": (3 / 6, (2 / 4 + 1 / 2) / 2),
    "px5": (5 / 6, (1 + 1 / 2) / 2),
    # A: pixel 2 (4 > 3 and 4 > 0.5) is an outlier, pixel 3 (4 > 3 but 4 < 5% of 100) is not; B: pixel 0
    "fl_all": (100 * 2 / 6, (25 + 50) / 2),
    "epe_noc": (8.5 / 4, (6.5 / 3 + 2) / 2),
    "fl_all_noc": (0.0, 0.0),
    "px1_noc": (1 / 4, (1 / 3 + 0) / 2),
    "px3_noc": (3 / 4, (2 / 3 + 1) / 2),
    "px5_noc": (1.0, 1.0),
    "epe_occ": (7.0, 7.0),
    "px1_occ": (0.0, 0.0),
    "px3_occ": (0.0, 0.0),
    "px5_occ": (1 / 2, (1 + 0) / 2),
    "fl_all_occ": (100.0, 100.0),
    "epe_s0-10": (12.5 / 3, (2.5 / 2 + 10) / 2),
    "epe_s10-40": (4.0, 4.0),
    "epe_s40+": (3.0, (4 + 2) / 2),
}


def test_optical_metrics_hand_computed_both_reductions():
    pred, gt, valid, occluded = _optical_case()
    acc = Accumulator.from_partial(optical_flow_partial(pred, gt, valid, occluded))
    metrics = optical_flow_metrics(acc, PROTOCOLS["default"])
    for name, (pixel, image) in EXPECTED_OPTICAL.items():
        entry = metrics[name]
        assert entry["reduction"] == "pixel"
        assert entry["value"] == pytest.approx(pixel, rel=1e-12), name
        assert entry["alternatives"]["image"] == pytest.approx(image, rel=1e-12), name
    assert set(metrics) == set(EXPECTED_OPTICAL)  # every metric, split and reduction is checked above
    # the two reductions really differ here
    assert metrics["epe"]["value"] != pytest.approx(metrics["epe"]["alternatives"]["image"])


def test_optical_protocol_defaults_match_the_devkits():
    pred, gt, valid, occluded = _optical_case()
    acc = Accumulator.from_partial(optical_flow_partial(pred, gt, valid, occluded))
    kitti = optical_flow_metrics(acc, PROTOCOLS["kitti2015"])
    assert kitti["epe"]["reduction"] == "image"  # RAFT validate_kitti: mean of per-image means
    assert kitti["epe"]["value"] == pytest.approx(EXPECTED_OPTICAL["epe"][1])
    assert kitti["fl_all"]["reduction"] == "pixel"  # devkit / RAFT: pooled outlier flags
    assert kitti["fl_all"]["value"] == pytest.approx(EXPECTED_OPTICAL["fl_all"][0])
    sintel = optical_flow_metrics(acc, PROTOCOLS["sintel"])
    assert sintel["epe"]["reduction"] == "pixel"
    assert sintel["epe_matched"]["value"] == pytest.approx(EXPECTED_OPTICAL["epe_noc"][0])
    assert sintel["epe_unmatched"]["value"] == pytest.approx(EXPECTED_OPTICAL["epe_occ"][0])


def test_optical_without_occlusion_has_no_occ_splits_and_checks_inputs():
    pred, gt, valid, _ = _optical_case()
    metrics = optical_flow_metrics(Accumulator.from_partial(optical_flow_partial(pred, gt, valid)))
    assert "epe_noc" not in metrics and "epe_occ" not in metrics
    assert metrics["epe"]["value"] == pytest.approx(EXPECTED_OPTICAL["epe"][0])
    with pytest.raises(ShapeError, match=r"\(P, 2, H, W\)"):
        optical_flow_partial(pred[:, :1], gt, valid)
    bad = pred.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ShapeError, match="not finite at 1 valid pixels"):
        optical_flow_partial(bad, gt, valid)


def test_optical_split_per_image_equals_split_in_pieces():
    pred, gt, valid, occluded = _optical_case()
    whole = Accumulator.from_partial(optical_flow_partial(pred, gt, valid, occluded))
    pieces = Accumulator.merged(
        Accumulator.from_partial(optical_flow_partial(pred[i : i + 1], gt[i : i + 1], valid[i : i + 1], occluded[i : i + 1]))
        for i in (1, 0)
    )
    for name, entry in optical_flow_metrics(whole).items():
        other = optical_flow_metrics(pieces)[name]
        assert entry["value"] == pytest.approx(other["value"], rel=1e-15, nan_ok=True)


def test_thresholds_are_strict_at_the_boundaries():
    """px: epe < t (RAFT); Fl: epe > 3 and epe > 0.05 |gt| (devkit), an error exactly at a threshold is not counted."""
    gt = np.zeros((1, 2, 1, 4))
    gt[0, 0, 0] = [0, 0, 0, 100]
    pred = gt.copy()
    pred[0, 0, 0] = [1, 3, 5, 105]  # epe exactly 1, 3, 5 and 5 = 5 % of |gt| = 100
    m = optical_flow_metrics(Accumulator.from_partial(optical_flow_partial(pred, gt, np.ones((1, 1, 4), bool))))
    assert m["px1"]["value"] == 0.0 and m["px3"]["value"] == 0.25 and m["px5"]["value"] == 0.5
    assert m["fl_all"]["value"] == 25.0  # only the 5 px error on a zero flow


def test_occlusion_splits_only_when_every_pair_has_a_mask():
    """A mask for image A only: pooled _noc/_occ would cover A alone beside an `epe` over A and B."""
    pred, gt, valid, occluded = _optical_case()
    parts = [
        optical_flow_partial(pred[:1], gt[:1], valid[:1], occluded[:1]),
        optical_flow_partial(pred[1:], gt[1:], valid[1:]),
    ]
    acc = Accumulator.merged(Accumulator.from_partial(p) for p in parts)
    assert occlusion_coverage(acc) == "partial"
    metrics = optical_flow_metrics(acc, PROTOCOLS["sintel"])
    assert not any(k.endswith(("_noc", "_occ")) or k in ("epe_matched", "epe_unmatched") for k in metrics)
    assert metrics["epe"]["value"] == pytest.approx(EXPECTED_OPTICAL["epe"][0])
    # image A alone (its own mask) still has them: noc = pixels 0, 1, 3 -> epe (0.5 + 2 + 4) / 3
    alone = optical_flow_metrics(Accumulator.from_partial(parts[0]), PROTOCOLS["sintel"])
    assert alone["epe_matched"]["value"] == pytest.approx(6.5 / 3) and alone["epe_unmatched"]["value"] == 4.0
    full = Accumulator.from_partial(optical_flow_partial(pred, gt, valid, occluded))
    assert occlusion_coverage(full) == "full"
    assert occlusion_coverage(Accumulator.from_partial(parts[1])) == "none"


# -- scene flow ------------------------------------------------------------------------------------
def _scene_case():
    gt = np.array([[1, 0, 0], [0, 0, 0], [0, 2, 0]], np.float64)
    pred = np.array([[1, 0, 0.04], [0.2, 0, 0], [0, 2.15, 0]], np.float64)
    return pred, gt


def test_scene_flow_metrics_hand_computed():
    pred, gt = _scene_case()
    m = scene_flow_metrics_per_sample(pred, gt)
    assert m["epe3d"] == pytest.approx((0.04 + 0.2 + 0.15) / 3)
    # p0: epe .04 -> strict and relax; p1: gt = 0 so rel is huge -> outlier only; p2: rel .075 -> relax only
    assert m["acc3d_strict"] == pytest.approx(1 / 3)
    assert m["acc3d_relax"] == pytest.approx(2 / 3)
    assert m["outliers"] == pytest.approx(1 / 3)
    # angle: atan(0.04) ; a zero gt vector gives NaN -> 0 -> pi/2 (NSFP) ; parallel is clamped to 1 - 1e-7
    expected_angle = (math.atan(0.04) + math.pi / 2 + math.acos(1 - 1e-7)) / 3
    assert m["angle_error"] == pytest.approx(expected_angle, rel=1e-9)


def test_scene_flow_sample_mean_vs_point_pooled():
    pred, gt = _scene_case()
    acc = Accumulator.from_partial(scene_flow_partial(pred, gt))
    acc.merge(Accumulator.from_partial(scene_flow_partial(np.array([[0, 0, 1.0]]), np.array([[0, 0, 1.0]]))))
    metrics = scene_flow_metrics(acc)
    assert metrics["epe3d"]["reduction"] == "sample"
    assert metrics["epe3d"]["value"] == pytest.approx((0.13 + 0.0) / 2)  # mean over samples
    assert metrics["epe3d"]["alternatives"]["point"] == pytest.approx(0.39 / 4)  # pooled points
    assert metrics["acc3d_strict"]["value"] == pytest.approx((1 / 3 + 1) / 2)
    assert metrics["acc3d_strict"]["eps"] == 1e-20
    assert metrics["angle_error"]["eps"] == 1e-7


def test_scene_flow_mask_and_rel_eps():
    gt = np.array([[0, 0, 1e-4], [5, 0, 0]])
    pred = gt + np.array([[0.06, 0, 0], [0, 0, 0]])
    # NSFP eps 1e-20: rel = 0.06 / 1e-4 = 600 -> relax fails on rel, passes on epe < 0.1
    nsfp = scene_flow_metrics_per_sample(pred[:1], gt[:1])
    assert (nsfp["acc3d_relax"], nsfp["acc3d_strict"], nsfp["outliers"]) == (1.0, 0.0, 1.0)
    part = scene_flow_partial(pred, gt, mask=np.array([False, True]))
    assert part["counts"]["point:n"] == 1 and part["sums"]["sample:epe3d"] == 0.0
    with pytest.raises(ShapeError, match=r"expected shape \(2,\)"):
        scene_flow_partial(pred, gt, mask=np.array([True]))


# -- Argoverse 2 -----------------------------------------------------------------------------------
CAR = AV2_CATEGORY_TO_INDEX["REGULAR_VEHICLE"]
PED = AV2_CATEGORY_TO_INDEX["PEDESTRIAN"]


def _av2_case():
    ego = np.eye(4)
    ego[0, 3] = 1.0  # ego flow (1, 0, 0) for every point
    pc1 = np.array([[10, 0, 0], [20, 0, 0], [5, 5, 0], [60, 0, 0], [0, 0, -1], [1, 1, 0], [-30, 40, 0]], np.float64)
    gt = np.tile([1.0, 0, 0], (7, 1))
    pred = np.tile([1.0, 0, 0], (7, 1))
    classes = np.array([0, CAR, PED, 0, 0, 0, 0])
    pred[0] = [1.125, 0, 0]  # bg static, epe 0.125
    gt[1] = [2, 0, 0]  # |gt - ego| = 1 -> dynamic car
    pred[1] = [2, 0.5, 0]  # epe 0.5
    gt[2] = [1.03125, 0, 0]  # 0.03125 < 0.05 -> static pedestrian
    pred[3] = [9, 9, 9]  # outside the 50 m box: not scored
    pred[4] = [9, 9, 9]  # ground: not scored
    pred[5] = [9, 9, 9]  # invalid: not scored
    pred[6] = [1, 0, 0.25]  # bg static inside the box (|x| 30, |y| 40), epe 0.25
    valid = np.array([1, 1, 1, 1, 1, 0, 1], bool)
    ground = np.array([0, 0, 0, 0, 1, 0, 0], bool)
    return pred, gt, pc1, classes, ego, valid, ground


def test_av2_threeway_hand_computed_and_count_weighted():
    pred, gt, pc1, classes, ego, valid, ground = _av2_case()
    acc = Accumulator.from_partial(av2_threeway_partial(pred, gt, pc1, classes, ego, valid, ground))
    one = av2_threeway_metrics(acc)
    assert one["epe_bg_static"]["value"] == pytest.approx((0.125 + 0.25) / 2)
    assert one["epe_fg_dynamic"]["value"] == pytest.approx(0.5)
    assert one["epe_fg_static"]["value"] == pytest.approx(0.03125)
    assert one["epe_threeway"]["value"] == pytest.approx((0.1875 + 0.5 + 0.03125) / 3)
    # a second frame with one background point of EPE 1: the dataset value weights points, not frames
    p2 = av2_threeway_partial(np.array([[2.0, 0, 0]]), np.array([[1.0, 0, 0]]), np.array([[3.0, 0, 0]]), np.array([0]), ego)
    acc.merge(Accumulator.from_partial(p2))
    two = av2_threeway_metrics(acc)
    assert two["epe_bg_static"]["value"] == pytest.approx((0.125 + 0.25 + 1.0) / 3)
    assert two["epe_bg_static"]["count"] == 3
    assert two["epe_threeway"]["value"] == pytest.approx(((0.125 + 0.25 + 1.0) / 3 + 0.5 + 0.03125) / 3)


def test_av2_float16_quantization_is_what_the_leaderboard_sees():
    pred, gt, pc1, classes, ego, valid, ground = _av2_case()
    pred = pred.copy()
    pred[0] = [1.1, 0, 0]  # 1.1 is 1.099609375 in float16
    q = av2_threeway_metrics(Accumulator.from_partial(av2_threeway_partial(pred, gt, pc1, classes, ego, valid, ground)))
    f = av2_threeway_metrics(
        Accumulator.from_partial(av2_threeway_partial(pred, gt, pc1, classes, ego, valid, ground, quantize_float16=False))
    )
    assert q["epe_bg_static"]["value"] == pytest.approx((0.099609375 + 0.25) / 2, rel=1e-12)
    assert f["epe_bg_static"]["value"] == pytest.approx((0.1 + 0.25) / 2, rel=1e-12)


def test_bucketed_normalized_epe_hand_computed():
    assert len(BUCKET_EDGES) - 1 == 51 and BUCKET_EDGES[-2] == 2.0 and np.isinf(BUCKET_EDGES[-1])
    bollard = AV2_CATEGORY_TO_INDEX["BOLLARD"]
    pc1 = np.array([[1, 0, 0], [2, 0, 0], [3, 0, 0], [4, 0, 0], [5, 0, 0], [40, 0, 0], [6, 0, 0]], np.float64)
    gt = np.array([[0, 0, 0], [0.5, 0, 0], [1.5, 0, 0], [0.01, 0, 0], [1, 0, 0], [1, 0, 0], [3.0, 0, 0]])
    pred = np.array([[0.1, 0, 0], [0.6, 0, 0], [1.5, 0.6, 0], [0, 0, 0], [5, 0, 0], [5, 0, 0], [3.3, 0, 0]])
    classes = np.array([0, CAR, CAR, PED, bollard, CAR, CAR])
    acc = Accumulator.from_partial(bucketed_partial(pred, gt, pc1, classes))
    m = bucketed_metrics(acc)
    assert m["bucketed_static_epe/BACKGROUND"]["value"] == pytest.approx(0.1)
    assert math.isnan(m["bucketed_dynamic_norm_epe/BACKGROUND"]["value"])
    assert math.isnan(m["bucketed_static_epe/CAR"]["value"])
    # CAR buckets: speed .5 (epe .1 -> .2), 1.5 (epe .6 -> .4), 3.0 in [2, inf) (epe .3 -> .1); x = 40 is outside 35 m
    assert m["bucketed_dynamic_norm_epe/CAR"]["value"] == pytest.approx((0.2 + 0.4 + 0.1) / 3)
    assert m["bucketed_static_epe/PEDESTRIAN"]["value"] == pytest.approx(0.01)
    assert math.isnan(m["bucketed_static_epe/WHEELED_VRU"]["value"])
    assert m["bucketed_static_epe"]["value"] == pytest.approx((0.1 + 0.01) / 2)  # nan-mean over classes
    assert m["bucketed_dynamic_norm_epe"]["value"] == pytest.approx(0.7 / 3)
    # ego-motion compensation: adding the same ego flow to gt and pred changes nothing
    ego = np.eye(4)
    ego[:3, 3] = [0.7, -0.2, 0.0]
    shift = pc1 @ ego[:3, :3].T + ego[:3, 3] - pc1
    moved = bucketed_metrics(Accumulator.from_partial(bucketed_partial(pred + shift, gt + shift, pc1, classes, ego)))
    assert moved["bucketed_dynamic_norm_epe"]["value"] == pytest.approx(m["bucketed_dynamic_norm_epe"]["value"])


def test_bucketed_counts_weight_points_across_frames():
    # bucket 12 ([0.48, 0.52)) of CAR in two frames: normalized = sum(epe) / sum(speed), not a mean of ratios
    pc1 = np.array([[1.0, 0, 0]])
    a = bucketed_partial(np.array([[0.6, 0, 0]]), np.array([[0.5, 0, 0]]), pc1, np.array([CAR]))
    b = bucketed_partial(np.array([[0.51, 0.3, 0]]), np.array([[0.51, 0, 0]]), pc1, np.array([CAR]))
    acc = Accumulator.merged([Accumulator.from_partial(a), Accumulator.from_partial(b)])
    value = bucketed_metrics(acc)["bucketed_dynamic_norm_epe/CAR"]["value"]
    assert value == pytest.approx((0.1 + 0.3) / (0.5 + 0.51))


# -- oracles: the reference code's own formulas -------------------------------------------------
def test_matches_raft_validate_kitti_and_sintel_formulas():
    """RAFT evaluate.py: KITTI EPE = mean of per-image means, F1 = pooled outliers; Sintel EPE pooled."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    acc = Accumulator()
    epe_list, out_list, sintel_epe = [], [], []
    for i in range(4):
        h, w = 12 + i, 17
        gt = rng.normal(0, 20, (2, h, w)).astype(np.float32)
        pred = gt + rng.normal(0, 3, (2, h, w)).astype(np.float32)
        valid = rng.random((h, w)) > 0.3
        acc.merge(Accumulator.from_partial(optical_flow_partial(pred[None], gt[None], valid[None])))
        # --- RAFT validate_kitti, verbatim in spirit (torch, float32) ---
        fp, fg, val = torch.from_numpy(pred), torch.from_numpy(gt), torch.from_numpy(valid.ravel())
        epe = torch.sum((fp - fg) ** 2, dim=0).sqrt()
        mag = torch.sum(fg**2, dim=0).sqrt()
        epe, mag = epe.view(-1), mag.view(-1)
        out = ((epe > 3.0) & ((epe / mag) > 0.05)).float()
        epe_list.append(epe[val].mean().item())
        out_list.append(out[val].cpu().numpy())
        sintel_epe.append(epe[val].numpy())
    kitti = optical_flow_metrics(acc, PROTOCOLS["kitti2015"])
    assert kitti["epe"]["value"] == pytest.approx(np.mean(epe_list), rel=1e-5)
    assert kitti["fl_all"]["value"] == pytest.approx(100 * np.mean(np.concatenate(out_list)), rel=1e-12)
    sintel = optical_flow_metrics(acc, PROTOCOLS["sintel"])
    assert sintel["epe"]["value"] == pytest.approx(np.mean(np.concatenate(sintel_epe)), rel=1e-5)
    all_epe = np.concatenate(sintel_epe)
    for name, thr in (("px1", 1), ("px3", 3), ("px5", 5)):
        assert sintel[name]["value"] == pytest.approx(np.mean(all_epe < thr), abs=1e-12)


def test_matches_nsfp_scene_flow_metrics_formula():
    """NSFP utils.scene_flow_metrics (torch, float32, batch axis) on random flows."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    gt = rng.normal(0, 1, (500, 3)).astype(np.float32)
    gt[:5] = 0  # zero GT vectors: rel huge, angle NaN -> pi/2
    pred = (gt + rng.normal(0, 0.08, (500, 3))).astype(np.float32)
    p, l = torch.from_numpy(pred)[None], torch.from_numpy(gt)[None]
    l2 = torch.sqrt(torch.sum((p - l) ** 2, 2))
    rel = l2 / (torch.sqrt(torch.sum(l * l, 2)) + 1e-20)
    ref = {
        "epe3d": l2.mean().item(),
        "acc3d_strict": ((l2 < 0.05) | (rel < 0.05)).float().mean().item(),
        "acc3d_relax": ((l2 < 0.1) | (rel < 0.1)).float().mean().item(),
        "outliers": ((l2 > 0.3) | (rel > 0.1)).float().mean().item(),
    }
    ul, up = l / l.norm(dim=2, keepdim=True), p / p.norm(dim=2, keepdim=True)
    dot = (ul * up).sum(2).clamp(min=-1 + 1e-7, max=1 - 1e-7)
    dot[dot != dot] = 0
    ref["angle_error"] = torch.acos(dot).mean().item()
    ours = scene_flow_metrics_per_sample(pred, gt)
    for name, value in ref.items():
        assert ours[name] == pytest.approx(value, rel=2e-5, abs=1e-7), name
