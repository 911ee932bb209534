"""The runner: predictions folders, method objects, reports, resume after a crash, workers, Ray."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from motionflow.datasets.synthetic import synthetic_clip, synthetic_lidar_pair
from motionflow.errors import DatasetNotFoundError, FormatError, ShapeError, UnknownNameError
from motionflow.eval import Report, evaluate, write_prediction
from motionflow.eval.runner import SampleList, work_units
from motionflow.eval.scene import AV2_CATEGORY_TO_INDEX
from motionflow.io import write_flow
from motionflow.types import FlowPrediction, SceneFlowSample

OFFSET = np.array([0.3, 0.4], np.float32)[None, :, None, None]  # |offset| = 0.5 px


def _clips(n=4, size=(24, 32)):
    samples = []
    for i in range(n):
        s = synthetic_clip(2, size, seed=i)
        s.id = f"clip{i}"
        samples.append(s)
    return SampleList(samples, name="synthetic-flow")


def _write_offset_predictions(ds, directory, offset=OFFSET):
    for s in ds.samples:
        write_prediction(directory, ds.name, s, s.flow + offset)


def _metric_values(report):
    return json.dumps({k: v for k, v in report.to_dict()["metrics"].items()}, sort_keys=True)


def test_predictions_with_known_offset_give_known_epe_and_reports(tmp_path):
    ds = _clips()
    _write_offset_predictions(ds, tmp_path / "pred")
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == [f"clip{i}.flo" for i in range(4)]
    report = evaluate(ds, predictions_dir=tmp_path / "pred", out=tmp_path / "r.json", progress=False)
    assert report.value("epe") == pytest.approx(0.5, abs=1e-5)
    assert report.metrics["epe"]["alternatives"]["image"] == pytest.approx(0.5, abs=1e-5)
    assert report.value("px1") == 1.0 and report.value("fl_all") == 0.0
    assert report.num_samples == 4 and [r["id"] for r in report.per_sample] == [f"clip{i}" for i in range(4)]
    # JSON schema (DESIGN.md section 6) + CSV and markdown beside it
    data = json.loads((tmp_path / "r.json").read_text())
    for key in ("dataset", "split", "method", "metrics", "per_sample", "runtime", "environment"):
        assert key in data
    assert data["metrics"]["epe"]["reduction"] == "pixel"
    assert data["metrics"]["epe_s10-40"]["value"] is None  # no pixel that fast: NaN -> null
    assert data["runtime"]["seconds_per_sample"] >= 0 and data["runtime"]["peak_rss_mb"] > 0
    env = data["environment"]
    assert env["motionflow"] and env["torch"] and env["device"] == "cpu" and "git_sha" in env
    csv_lines = (tmp_path / "r.csv").read_text().splitlines()
    assert csv_lines[0] == "metric,value,unit,reduction,alternative_reduction,alternative_value,dataset,split,method,protocol"
    assert csv_lines[1].startswith("epe,0.5") and csv_lines[1].split(",")[2] == "px"
    assert data["metrics"]["epe"]["unit"] == "px" and data["metrics"]["px1"]["unit"] == "fraction"
    assert data["metrics"]["fl_all"]["unit"] == "%"
    md = (tmp_path / "r.md").read_text()
    assert "| epe | 0.5000 | px | pixel |" in md
    assert Report.load(tmp_path / "r.json").value("epe") == report.value("epe")


def test_missing_and_misshaped_predictions_are_errors_naming_the_sample(tmp_path):
    ds = _clips(3)
    _write_offset_predictions(ds, tmp_path / "pred")
    (tmp_path / "pred" / "clip1.flo").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"sample 'clip1' is missing: expected the file .*clip1\.flo"):
        evaluate(ds, predictions_dir=tmp_path / "pred", progress=False)
    write_prediction(tmp_path / "pred", ds.name, ds.samples[1], np.zeros((1, 2, 10, 10), np.float32))
    with pytest.raises(ShapeError, match=r"sample 'clip1'.*expected flow of shape \(24, 32, 2\), found \(10, 10, 2\)"):
        evaluate(ds, predictions_dir=tmp_path / "pred", progress=False)
    sparse = np.moveaxis(ds.samples[1].flow[0], 0, -1).copy()
    sparse[:2, :3] = np.nan  # 6 pixels without an estimate
    write_flow(tmp_path / "pred" / "clip1.flo", sparse)
    with pytest.raises(ShapeError, match=r"sample 'clip1'.*expected a flow at every pixel, found 6 invalid pixels"):
        evaluate(ds, predictions_dir=tmp_path / "pred", progress=False)


def test_resume_after_a_crash_skips_finished_samples_and_loses_nothing(tmp_path):
    ds = _clips(4)
    pred = tmp_path / "pred"
    _write_offset_predictions(ds, pred)
    full = evaluate(ds, predictions_dir=pred, progress=False)

    missing = pred / "clip2.flo"
    saved = missing.read_bytes()
    missing.unlink()
    out = tmp_path / "run" / "report.json"
    with pytest.raises(DatasetNotFoundError, match="clip2"):
        evaluate(ds, predictions_dir=pred, out=out, progress=False)  # "crashes" at sample 2
    records = out.with_name("report.samples.jsonl")
    lines = records.read_text().splitlines()
    assert "header" in json.loads(lines[0]) and [json.loads(x)["id"] for x in lines[1:]] == ["clip0", "clip1"]
    assert not out.exists()
    # a torn final write (killed mid-line) is dropped, not fatal
    with open(records, "a") as fh:
        fh.write('{"index": 3, "id": "cl')
    missing.write_bytes(saved)
    resumed = evaluate(ds, predictions_dir=pred, out=out, progress=False)
    assert resumed.runtime["samples_resumed"] == 2 and resumed.runtime["samples_this_run"] == 2
    assert _metric_values(resumed) == _metric_values(full)  # bit-identical to an uninterrupted run
    assert [json.loads(x)["id"] for x in records.read_text().splitlines()[1:]] == ["clip0", "clip1", "clip2", "clip3"]
    # everything finished: a third run computes nothing
    again = evaluate(ds, predictions_dir=pred, out=out, progress=False)
    assert again.runtime["samples_this_run"] == 0 and _metric_values(again) == _metric_values(full)
    # records of another evaluation are never mixed in
    with pytest.raises(FormatError, match=r"records of another evaluation \(method\.predictions[:)].*--no-resume"):
        evaluate(ds, predictions_dir=tmp_path, out=out, progress=False)
    # nor records of a dataset whose listing changed since the run
    shifted = SampleList([ds.samples[1], ds.samples[0]] + ds.samples[2:], name=ds.name)
    with pytest.raises(FormatError, match=r"another evaluation \(dataset\.ids_sha256: .*--no-resume"):
        evaluate(shifted, predictions_dir=pred, out=out, progress=False)


def test_resume_recomputes_a_sample_whose_prediction_file_changed(tmp_path):
    ds = _clips(3)
    pred = tmp_path / "pred"
    _write_offset_predictions(ds, pred)
    out = tmp_path / "report.json"
    first = evaluate(ds, predictions_dir=pred, out=out, progress=False)
    assert first.value("epe") == pytest.approx(0.5, abs=1e-5)
    # clip0's flow regenerated (10x the offset: EPE 5 px): reusing its record would keep 0.5 px
    write_prediction(pred, ds.name, ds.samples[0], ds.samples[0].flow + 10 * OFFSET)
    resumed = evaluate(ds, predictions_dir=pred, out=out, progress=False)
    fresh = evaluate(ds, predictions_dir=pred, progress=False)
    assert resumed.runtime["samples_recomputed"] == 1 and resumed.runtime["samples_this_run"] == 1
    assert resumed.per_sample[0]["metrics"]["epe"] == pytest.approx(5.0, abs=1e-4)
    assert _metric_values(resumed) == _metric_values(fresh)
    assert resumed.value("epe") == pytest.approx(2.0, abs=1e-4)  # (5 + 0.5 + 0.5) / 3, equal pixel counts
    # a deleted prediction file is never silently reused either
    (pred / "clip1.flo").unlink()
    with pytest.raises(DatasetNotFoundError, match="clip1"):
        evaluate(ds, predictions_dir=pred, out=out, progress=False)


class _ZeroFlow:
    name = "zero-test"

    def __call__(self, pc1, pc2):
        return np.zeros_like(np.asarray(pc1))


class _OffsetOptical:
    """Returns the sample's GT + offset: lets the runner's method path be checked exactly."""

    name = "offset-test"
    clip_length = 2

    def __init__(self, samples):
        self.by_bytes = {s.frames.tobytes(): s for s in samples}

    def __call__(self, frames):
        import torch

        assert frames.dtype == torch.float32 and frames.shape[0] == 1
        s = self.by_bytes[frames[0].to(torch.uint8).numpy().tobytes()]
        return FlowPrediction(flow=torch.from_numpy(s.flow + OFFSET)[None])


def test_method_object_and_write_predictions_round_trip(tmp_path):
    ds = _clips(2)
    report = evaluate(ds, _OffsetOptical(ds.samples), write_predictions=tmp_path / "w", progress=False)
    assert report.method == "offset-test"
    assert report.value("epe") == pytest.approx(0.5, abs=1e-6)
    again = evaluate(ds, predictions_dir=tmp_path / "w", progress=False)
    assert _metric_values(again) == _metric_values(report)
    # resuming a run that wrote no prediction files with write_predictions would skip the finished
    # samples and leave their files missing: it is refused, not silently incomplete
    method = _OffsetOptical(ds.samples)
    out = tmp_path / "r" / "report.json"
    evaluate(ds, method, out=out, progress=False)
    with pytest.raises(FormatError, match="write_predictions"):
        evaluate(ds, method, out=out, write_predictions=tmp_path / "w2", progress=False)
    evaluate(ds, method, out=out, write_predictions=tmp_path / "w2", resume=False, progress=False)
    assert sorted(p.name for p in (tmp_path / "w2").iterdir()) == ["clip0.flo", "clip1.flo"]


def test_scene_flow_zero_method_and_max_samples():
    pairs = [synthetic_lidar_pair(seed=s, beams=8, azimuths=64) for s in range(3)]
    report = evaluate(SampleList(pairs, name="synthetic-lidar"), _ZeroFlow(), max_samples=2, progress=False)
    assert report.num_samples == 2
    expected = np.mean([np.linalg.norm(p.flow.astype(np.float64), axis=1).mean() for p in pairs[:2]])
    assert report.value("epe3d") == pytest.approx(expected, rel=1e-12)
    assert report.metrics["epe3d"]["reduction"] == "sample"
    pooled = np.concatenate([np.linalg.norm(p.flow.astype(np.float64), axis=1) for p in pairs[:2]]).mean()
    assert report.metrics["epe3d"]["alternatives"]["point"] == pytest.approx(pooled, rel=1e-12)
    assert report.value("angle_error") == pytest.approx(math.pi / 2)  # zero prediction: NaN dot -> pi/2
    assert "epe_threeway" not in report.metrics


def test_av2_protocol_through_the_runner():
    car = AV2_CATEGORY_TO_INDEX["REGULAR_VEHICLE"]
    ego = np.eye(4)
    ego[0, 3] = 1.0
    pc1 = np.array([[10, 0, 0], [20, 0, 0], [60, 0, 0], [0, 5, 0]], np.float32)
    gt = np.array([[1, 0, 0], [2, 0, 0], [1, 0, 0], [1, 0, 0]], np.float32)
    sample = SceneFlowSample("log/1", pc1, pc1 + 1, flow=gt, classes=np.array([0, car, 0, 0]),
                             ground1=np.array([0, 0, 0, 1], bool), ego_motion=ego)

    class EgoOnly:
        name = "ego-only"

        def __call__(self, a, b):
            return np.tile(np.array([1.0, 0, 0], np.float32), (len(a), 1))

    report = evaluate([sample], EgoOnly(), progress=False, protocol="av2")
    assert report.value("epe_bg_static") == 0.0 and report.value("epe_fg_dynamic") == pytest.approx(1.0)
    assert math.isnan(report.value("epe_fg_static"))
    # standard metrics on the AV2 eval points only (x = 60 and the ground point are out)
    assert report.value("epe3d") == pytest.approx(0.5)
    assert report.value("bucketed_dynamic_norm_epe/CAR") == pytest.approx(1.0)  # ego-only flow: EPE = speed
    no_ground = SceneFlowSample("log/2", pc1, pc1, flow=gt, classes=np.array([0, car, 0, 0]), ego_motion=ego)
    report = evaluate([no_ground], EgoOnly(), progress=False, protocol="av2")
    assert any("no ground labels" in n for n in report.protocol["notes"])


def test_bad_arguments_are_typed_errors(tmp_path):
    ds = _clips(1)
    with pytest.raises(UnknownNameError, match="exactly one of method or predictions_dir"):
        evaluate(ds, progress=False)
    with pytest.raises(UnknownNameError, match="valid choices: local, ray"):
        evaluate(ds, predictions_dir=tmp_path, engine="spark", progress=False)
    with pytest.raises(UnknownNameError, match="unknown optical-flow method 'nope'; valid choices: .*raft"):
        evaluate(ds, "nope", progress=False)
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        evaluate(ds, predictions_dir=tmp_path / "absent", progress=False)


def test_work_units_per_chunk_and_per_scene():
    ds = _clips(5)
    for s, new_id in zip(ds.samples, ["alley_1/frame_0001", "alley_1/frame_0002", "bamboo_1/frame_0001", "x", "y"]):
        s.id = new_id
    assert work_units(ds, [0, 1, 2, 3, 4], 2) == [[0, 1], [2, 3], [4]]
    assert work_units(ds, [0, 1, 2, 3, 4], "scene") == [[0, 1], [2], [3], [4]]
    assert work_units(ds, [1, 2], "scene") == [[1], [2]]
    with pytest.raises(ShapeError, match="positive integer or 'scene'"):
        work_units(ds, [0], 0)


def test_workers_give_identical_numbers(tmp_path):
    ds = _clips(4)
    _write_offset_predictions(ds, tmp_path / "pred")
    # uneven predictions so that order of accumulation would matter for a naive float sum
    write_prediction(tmp_path / "pred", ds.name, ds.samples[3], ds.samples[3].flow + 7.77 * OFFSET)
    single = evaluate(ds, predictions_dir=tmp_path / "pred", progress=False)
    pooled = evaluate(ds, predictions_dir=tmp_path / "pred", workers=2, progress=False)
    assert pooled.runtime["workers"] == 2
    assert _metric_values(pooled) == _metric_values(single)
    assert [r["metrics"] for r in pooled.to_dict()["per_sample"]] == [r["metrics"] for r in single.to_dict()["per_sample"]]


def test_ray_local_cluster_matches_pool_and_single_process(tmp_path):
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'motionflow[ray]')")
    ds = _clips(4)
    _write_offset_predictions(ds, tmp_path / "pred")
    write_prediction(tmp_path / "pred", ds.name, ds.samples[2], ds.samples[2].flow + 3.3 * OFFSET)
    single = evaluate(ds, predictions_dir=tmp_path / "pred", progress=False)
    pooled = evaluate(ds, predictions_dir=tmp_path / "pred", workers=2, progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # one local instance for both runs
    try:
        ray_report = evaluate(ds, predictions_dir=tmp_path / "pred", engine="ray", chunk_size="scene", progress=False)
        assert ray_report.runtime["engine"] == "ray"
        assert _metric_values(ray_report) == _metric_values(single) == _metric_values(pooled)
        # a failing sample on Ray surfaces the evaluation's own typed error, naming the sample
        (tmp_path / "pred" / "clip1.flo").unlink()
        with pytest.raises(DatasetNotFoundError, match="clip1"):
            evaluate(ds, predictions_dir=tmp_path / "pred", engine="ray", progress=False)
        assert ray.is_initialized()  # evaluate leaves a Ray instance it did not start alone
    finally:
        ray.shutdown()



_CRASHING_SCRIPT = """
import os, sys
import numpy as np
import motionflow.eval.report
from motionflow.datasets.synthetic import synthetic_lidar_pair
from motionflow.eval import evaluate
from motionflow.eval.runner import SampleList

# others commit to this checkout while the test runs: a new git sha would (rightly) refuse the resume
motionflow.eval.report.git_sha = lambda start=None: "0" * 40

calls = []

class DiesAtThird:
    name = "dies-at-third"
    def __call__(self, pc1, pc2):
        calls.append(1)
        if len(calls) == 3 and sys.argv[2] == "crash":
            os._exit(9)  # a hard crash: no cleanup, no exception handling
        return np.full_like(np.asarray(pc1), 0.25)

pairs = [synthetic_lidar_pair(seed=s, beams=4, azimuths=32) for s in range(4)]
report = evaluate(SampleList(pairs, name="synthetic-lidar"), DiesAtThird(), out=sys.argv[1], progress=False)
print("computed", len(calls), "epe3d", repr(report.value("epe3d")))
"""


class _Quarter:
    name = "dies-at-third"

    def __call__(self, pc1, pc2):
        return np.full_like(np.asarray(pc1), 0.25)


def test_resume_after_a_hard_crash_of_the_process(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "r.json"

    def run(mode):
        return subprocess.run([sys.executable, "-c", _CRASHING_SCRIPT, str(out), mode], capture_output=True, text=True, timeout=300)

    crashed = run("crash")
    assert crashed.returncode == 9 and not out.exists(), crashed.stderr
    lines = out.with_name("r.samples.jsonl").read_text().splitlines()
    assert len(lines) == 1 + 2  # header + the two samples finished before the crash
    resumed = run("ok")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.startswith("computed 2 ")  # only the two missing samples were computed
    pairs = [synthetic_lidar_pair(seed=s, beams=4, azimuths=32) for s in range(4)]
    fresh = evaluate(SampleList(pairs, name="synthetic-lidar"), _Quarter(), progress=False)
    assert resumed.stdout.split("epe3d ")[1].strip() == repr(fresh.value("epe3d"))  # bit-identical
    assert json.loads(out.read_text())["metrics"]["epe3d"]["value"] == fresh.value("epe3d")
