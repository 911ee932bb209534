"""Scene-flow protocols: the AV2 challenge (ego motion, dynamic split, label conventions, av2-api
oracle, a real method on the shared sweeps) and the sampled NSFP protocol."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from motionflow.cli.main import main
from motionflow.datasets import get_dataset
from motionflow.errors import FormatError
from motionflow.eval import evaluate
from motionflow.eval.engines import SampleList
from motionflow.eval.scene import AV2_CATEGORY_TO_INDEX, av2_threeway_metrics, av2_threeway_partial, ego_motion_flow
from motionflow.eval.accumulator import Accumulator
from motionflow.io import write_feather
from motionflow.types import SceneFlowSample

CAR = AV2_CATEGORY_TO_INDEX["REGULAR_VEHICLE"]


def _yaw(deg: float, t) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    m = np.eye(4)
    m[:2, :2] = [[c, -s], [s, c]]
    m[:3, 3] = t
    return m


class _Fixed:
    """A scene-flow method object returning a given flow (the runner's method path, no optimisation)."""

    name = "fixed-test"

    def __init__(self, flow):
        self.flow = np.asarray(flow, np.float32)

    def __call__(self, pc1, pc2):
        return self.flow


def test_a_yawed_ego_motion_gives_the_hand_computed_ego_flow():
    ego = _yaw(90.0, [1.0, 0.0, 0.0])  # 90 deg left turn, 1 m forward
    pc1 = np.array([[10.0, 0.0, 0.0], [0.0, 5.0, 1.0], [3.0, 4.0, 0.0]])
    # R p + t - p: (10,0,0) -> (1,10,0); (0,5,1) -> (-4,0,1); (3,4,0) -> (-3,3,0)
    np.testing.assert_allclose(ego_motion_flow(pc1, ego), [[-9, 10, 0], [-4, -5, 0], [-6, -1, 0]], atol=1e-12)
    gt = ego_motion_flow(pc1, ego).astype(np.float32)  # static background
    sample = SceneFlowSample("log/1", pc1.astype(np.float32), pc1.astype(np.float32), flow=gt,
                             classes=np.zeros(3, np.int64), ground1=np.zeros(3, bool), ego_motion=ego)
    exact = evaluate([sample], _Fixed(gt), protocol="av2", progress=False)
    assert exact.value("epe_bg_static") == 0.0 and exact.metrics["epe_bg_static"]["count"] == 3
    translation_only = np.tile([1.0, 0.0, 0.0], (3, 1))  # an ego flow that forgets the rotation
    wrong = evaluate([sample], _Fixed(translation_only), protocol="av2", progress=False)
    expected = np.mean(np.linalg.norm(gt.astype(np.float16).astype(np.float64) - translation_only, axis=1))
    assert wrong.value("epe_bg_static") == pytest.approx(expected, rel=1e-3) and expected > 6


def test_the_dynamic_threshold_is_inclusive_at_5_cm_on_the_float32_ground_truth():
    ego = _yaw(0.0, [0.5, 0.0, 0.0])
    pc1 = np.zeros((2, 3), np.float32)
    at = np.float32(0.05)  # 0.0500000007 in float32: the label the official files hold
    below = np.nextafter(at, np.float32(0))
    gt = np.array([[0.5, at, 0], [0.5, below, 0]], np.float32)  # ||gt - ego flow|| is exactly `at` / `below`
    sample = SceneFlowSample("log/1", pc1, pc1, flow=gt, classes=np.array([CAR, CAR]), ground1=np.zeros(2, bool),
                             ego_motion=ego)
    m = evaluate([sample], _Fixed(gt), protocol="av2", progress=False).metrics
    assert m["epe_fg_dynamic"]["count"] == 1 and m["epe_fg_static"]["count"] == 1


def test_is_dynamic_labels_win_and_without_ego_motion_the_metrics_needing_it_are_dropped():
    pc1 = np.array([[1.0, 0, 0], [2.0, 0, 0], [3.0, 0, 0]], np.float32)
    gt = np.array([[0.0, 0, 0], [0.5, 0, 0], [0.0, 0, 0]], np.float32)
    labels = np.array([True, False, False])  # the label file says point 0 moves, point 1 does not
    pred = gt + np.array([[0.1, 0, 0], [0.2, 0, 0], [0.3, 0, 0]], np.float32)
    common = dict(flow=gt, classes=np.array([CAR, CAR, 0]), ground1=np.zeros(3, bool), meta={"dynamic": labels})
    with_ego = SceneFlowSample("log/1", pc1, pc1, ego_motion=np.eye(4), **common)
    m = evaluate([with_ego], _Fixed(pred), protocol="av2", progress=False).metrics
    assert m["epe_fg_dynamic"]["value"] == pytest.approx(0.1, abs=1e-3)  # point 0, by its label
    assert m["epe_fg_static"]["value"] == pytest.approx(0.2, abs=1e-3)  # point 1 moves 0.5 m but is labelled static
    assert "bucketed_static_epe" in m
    no_ego = SceneFlowSample("log/2", pc1, pc1, ego_motion=None, **common)
    report = evaluate([no_ego], _Fixed(pred), protocol="av2", progress=False)
    assert report.value("epe_fg_dynamic") == pytest.approx(0.1, abs=1e-3) and "bucketed_static_epe" not in report.metrics
    assert any("1 samples had no ego motion" in n for n in report.protocol["notes"])
    nothing = SceneFlowSample("log/3", pc1, pc1, flow=gt, classes=np.array([CAR, CAR, 0]), ground1=np.zeros(3, bool))
    report = evaluate([nothing], _Fixed(pred), protocol="av2", progress=False)
    assert "epe_threeway" not in report.metrics and "bucketed_static_epe" not in report.metrics
    assert any("neither ego motion nor is_dynamic" in n for n in report.protocol["notes"])
    # the NSFP 3-D angle keeps its own name under AV2 (av2-api's is a space-time angle)
    assert "angle_error_3d_nsfp" in report.metrics and "angle_error" not in report.metrics


def _av2_api_threeway(pred, gt, classes, dynamic, valid, mask):
    """av2-api ``eval.py`` written out: per (class, motion, distance) the mean EPE over valid points and the
    count; ``results_to_dict`` count-weights the means; 3-way = mean of FG-dynamic, FG-static, BG-static."""
    rows = []
    for frame in range(len(pred)):
        v = valid[frame] & mask[frame]
        epe = np.linalg.norm(pred[frame][v].astype(np.float64) - gt[frame][v].astype(np.float64), axis=-1)
        fg = classes[frame][v] != 0
        dyn = dynamic[frame][v]
        for cls, cm in (("Background", ~fg), ("Foreground", fg)):
            for motion, mm in (("Dynamic", dyn), ("Static", ~dyn)):
                sel = cm & mm
                rows.append((cls, motion, int(sel.sum()), float(epe[sel].mean()) if sel.any() else np.nan))
    out = {}
    for cls, motion in (("Foreground", "Dynamic"), ("Foreground", "Static"), ("Background", "Static")):
        group = [(n, e) for c, m, n, e in rows if (c, m) == (cls, motion) and n > 0]
        out[(cls, motion)] = sum(n * e for n, e in group) / sum(n for n, _ in group)
    return out, np.mean(list(out.values()))


def test_threeway_equals_the_av2_api_formula_on_random_frames():
    rng = np.random.default_rng(7)
    frames = []
    for _ in range(3):
        n = 400
        pc1 = rng.uniform(-70, 70, (n, 3)).astype(np.float32)
        ego = _yaw(rng.uniform(-5, 5), rng.normal(0, 0.5, 3))
        gt = (ego_motion_flow(pc1, ego) + (rng.random((n, 1)) < 0.3) * rng.normal(0, 0.4, (n, 3))).astype(np.float32)
        pred = (gt + rng.normal(0, 0.05, (n, 3))).astype(np.float32)
        frames.append((pc1, ego, gt, pred, rng.integers(0, 31, n) * (rng.random(n) < 0.4), rng.random(n) < 0.9, rng.random(n) < 0.1))
    acc = Accumulator()
    for pc1, ego, gt, pred, classes, valid, ground in frames:
        acc.merge(Accumulator.from_partial(av2_threeway_partial(pred, gt, pc1, classes, ego, valid, ground)))
    ours = av2_threeway_metrics(acc)
    f16 = lambda a: a.astype(np.float16)  # noqa: E731 - the official files store float16
    dynamic = [np.linalg.norm(gt.astype(np.float64) - ego_motion_flow(pc1, ego), axis=1) >= 0.05 for pc1, ego, gt, *_ in frames]
    mask = [(np.abs(pc1[:, 0]) <= 50) & (np.abs(pc1[:, 1]) <= 50) & ~ground for pc1, *_, ground in frames]
    parts, threeway = _av2_api_threeway([f16(f[3]) for f in frames], [f16(f[2]) for f in frames],
                                        [f[4] for f in frames], dynamic, [f[5] for f in frames], mask)
    assert ours["epe_fg_dynamic"]["value"] == pytest.approx(parts[("Foreground", "Dynamic")], rel=1e-12)
    assert ours["epe_fg_static"]["value"] == pytest.approx(parts[("Foreground", "Static")], rel=1e-12)
    assert ours["epe_bg_static"]["value"] == pytest.approx(parts[("Background", "Static")], rel=1e-12)
    assert ours["epe_threeway"]["value"] == pytest.approx(threeway, rel=1e-12)


# -- BucketedSceneFlowEval label files -----------------------------------------------------------------
def _quat(m):
    from scipy.spatial.transform import Rotation

    x, y, z, w = Rotation.from_matrix(m[:3, :3]).as_quat()
    return w, x, y, z


def _av2_log(root: Path, pc1: np.ndarray, pc2: np.ndarray, poses) -> Path:
    log = root / "val" / "log-b"
    for ts, pc in zip((1000, 1100), (pc1, pc2)):
        write_feather(log / "sensors" / "lidar" / f"{ts}.feather", {"x": pc[:, 0], "y": pc[:, 1], "z": pc[:, 2]})
    rows = {k: [] for k in ("timestamp_ns", "qw", "qx", "qy", "qz", "tx_m", "ty_m", "tz_m")}
    for ts, m in zip((1000, 1100), poses):
        for k, v in zip(rows, (ts, *_quat(m), *m[:3, 3])):
            rows[k].append(v)
    write_feather(log / "city_SE3_egovehicle.feather", {k: np.array(v, np.int64 if k == "timestamp_ns" else np.float64)
                                                       for k, v in rows.items()})
    return log


def test_a_bucketed_scene_flow_eval_label_file_is_converted_and_scored_to_hand_values(tmp_path):
    pc1 = np.array([[5.0, 0, 0.5], [6.0, 1.0, 0.5], [8.0, -2.0, 0.5], [10.0, 3.0, 0.5]], np.float32)
    poses = [np.eye(4), _yaw(0.0, [0.8, 0.0, 0.0])]  # the ego drives 0.8 m forward: static points move -0.8 m
    _av2_log(tmp_path, pc1, pc1, poses)
    # BSFE: background -1 with zero (ego-free) flow, a CAR (18 in BSFE) moving 1 m along y
    flow = np.array([[0, 0, 0], [0, 0, 0], [0, 1.0, 0], [0, 1.0, 0]], np.float32)
    write_feather(tmp_path / "labels" / "log-b" / "1000.feather",
                  {"flow_tx_m": flow[:, 0], "flow_ty_m": flow[:, 1], "flow_tz_m": flow[:, 2],
                   "is_valid": np.ones(4, bool), "classes_0": np.array([-1, -1, 18, 18], np.int8)})
    ds = get_dataset("av2", tmp_path, split="val", labels_root=tmp_path / "labels")
    s = ds[0]
    assert s.meta["label_convention"] == "bsfe" and s.classes.tolist() == [0, 0, CAR, CAR]
    # av2-api convention: ego-inclusive, pc1 + flow = ego @ (pc1 + bsfe flow)
    np.testing.assert_allclose(s.flow, [[-0.8, 0, 0], [-0.8, 0, 0], [-0.8, 1, 0], [-0.8, 1, 0]], atol=1e-6)
    pred = s.flow + np.array([[0.1, 0, 0], [0.1, 0, 0], [0, 0.25, 0], [0, 0.25, 0]], np.float32)
    report = evaluate(ds, _Fixed(pred), progress=False)
    m = report.metrics
    assert any("BucketedSceneFlowEval labels" in n for n in report.protocol["notes"])
    assert m["epe_bg_static"]["value"] == pytest.approx(0.1, abs=1e-3) and m["epe_bg_static"]["count"] == 2
    assert m["epe_fg_dynamic"]["value"] == pytest.approx(0.25, abs=1e-3) and m["epe_fg_dynamic"]["count"] == 2
    assert m["bucketed_dynamic_norm_epe/CAR"]["value"] == pytest.approx(0.25, rel=1e-6)  # 0.25 m error / 1 m speed
    # read with the other convention, the file is refused naming it and its -1s
    with pytest.raises(FormatError, match=r"1000\.feather: expected av2 class indices in 0\.\.30 in column 'classes_0', found \[-1\]"):
        get_dataset("av2", tmp_path, split="val", labels_root=tmp_path / "labels", label_convention="av2")[0]
    write_feather(tmp_path / "labels" / "log-b" / "1000.feather",
                  {"flow_tx_m": flow[:, 0], "flow_ty_m": flow[:, 1], "flow_tz_m": flow[:, 2], "classes": np.array([0, 0, 19, 31])})
    with pytest.raises(FormatError, match=r"1000\.feather: expected av2 class indices in 0\.\.30 in column 'classes', found \[31\]"):
        get_dataset("av2", tmp_path, split="val", labels_root=tmp_path / "labels")[0]


# -- a real method on the shared sweeps ----------------------------------------------------------------
def test_nsfp_through_eval_on_the_shared_av2_sweeps(sample_data, tmp_path):
    """NSFP with a small iteration budget under the AV2 protocol: labelled ground removed, cropped, fit on
    1024 points with the log's ego motion; every removed point gets the ego flow."""
    root = sample_data / "av2_sceneflow_7fab2350"
    out = tmp_path / "av2.json"
    assert main(["eval", "--dataset", "av2", "--root", str(root), "--method", "nsfp", "--method-option",
                 "stop={'max_iters': 10}", "--method-option", "max_points=1024", "--write-predictions",
                 str(tmp_path / "pred"), "--out", str(out), "--no-progress"]) == 0
    rep = json.loads(out.read_text())
    p = rep["protocol"]
    assert any("av2-api labels" in n for n in p["notes"])  # the shared sample's label files: which convention
    assert p["name"] == "av2" and p["preparation"]["ground"] == "labels" and p["preparation"]["ego_motion"] is True
    assert p["preparation"]["box"] == [-51.2, -51.2, -3.0, 51.2, 51.2, 3.0]
    assert any("no ground labels: ground removed by a RANSAC plane" in n for n in p["notes"])  # pc2 has no labels
    sample = get_dataset("av2", root)[0]
    with np.load(tmp_path / "pred" / f"{sample.id}.npz") as data:
        flow = data["flow"]
    ego = ego_motion_flow(sample.pc1, sample.ego_motion)
    far = np.abs(sample.pc1[:, 0]) > 51.2  # cropped away: filled with the ego flow exactly
    assert far.any() and np.allclose(flow[far], ego[far], atol=1e-5)
    np.testing.assert_allclose(flow[sample.ground1], ego[sample.ground1], atol=1e-5)
    # 10 iterations from the ego-compensated pair stay near the ego flow on static background (about 0.05 m
    # measured); zero flow misses it by the ego motion itself (0.14 m on this slow pair)
    zero = evaluate("av2", _Fixed(np.zeros_like(sample.pc1)), root=root, progress=False)
    assert rep["metrics"]["epe_bg_static"]["value"] < 0.5 * zero.value("epe_bg_static")
    print(f"nsfp (10 iterations) bg static {rep['metrics']['epe_bg_static']['value']:.4f}, zero {zero.value('epe_bg_static'):.4f}")
    assert rep["method"] == "nsfp" and rep["metrics"]["epe_threeway"]["unit"] == "m"


# -- sampled protocols -----------------------------------------------------------------------------------
def test_nsfp_protocol_scores_exactly_its_2048_sampled_points(tmp_path):
    n = 5000
    rng = np.random.default_rng(3)
    pc1 = rng.normal(0, 10, (n, 3)).astype(np.float32)
    gt = np.zeros((n, 3), np.float32)
    gt[:, 0] = np.arange(n)  # |gt| identifies the point
    ds = SampleList([SceneFlowSample("pair0", pc1, pc1.copy(), flow=gt)], name="argoverse-nsfp")

    class Zero:
        name = "zero-test"
        calls = []

        def __call__(self, a, b):
            Zero.calls.append((len(a), len(b)))
            return np.zeros_like(np.asarray(a))

    report = evaluate(ds, Zero(), protocol="nsfp", write_predictions=tmp_path / "p", progress=False)
    assert Zero.calls == [(2048, 2048)]
    with np.load(tmp_path / "p" / "pair0.npz") as data:
        flow = data["flow"]
    scored = np.isfinite(flow).all(axis=1)
    assert scored.sum() == 2048
    assert report.value("epe3d") == pytest.approx(np.arange(n)[scored].mean(), rel=1e-12)  # zero flow: epe = |gt|
    again = evaluate(ds, predictions_dir=tmp_path / "p", protocol="nsfp", progress=False)
    assert again.value("epe3d") == report.value("epe3d")  # the same points are scored from the files
    assert report.protocol["preparation"]["sample_points"] == 2048
