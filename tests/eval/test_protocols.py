"""Optical evaluation protocols: the official windows reach the network, KITTI 2012 / 2015 devkit metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from motionflow.cli.main import main
from motionflow.datasets.sintel import strided_windows
from motionflow.errors import UnknownNameError
from motionflow.eval import evaluate
from motionflow.eval.engines import SampleList
from motionflow.eval.protocols import PROTOCOLS, default_protocol, get_protocol
from motionflow.io import read_flow, read_image, write_flow, write_image
from motionflow.types import FlowSample


# -- protocol objects --------------------------------------------------------------------------------
def test_strided_windows_reproduce_the_official_evaluation_lists():
    # VideoFlow MOF MpiSintelTrain (8 frames): images [0, 0, 1 .. 7], windows every 3, remainder 1 flow
    assert strided_windows(8, 5, 3, 1, (1, 2, 3)) == [([0, 0, 1, 2, 3], (1, 2, 3)), ([2, 3, 4, 5, 6], (1, 2, 3)),
                                                      ([3, 4, 5, 6, 7], (3,))]
    # VideoFlow BOF (datasets_3frames): [t-1, t, t+1] with the first frame repeated
    assert strided_windows(4, 3, 1, 1, (1,)) == [([0, 0, 1], (1,)), ([0, 1, 2], (1,)), ([1, 2, 3], (1,))]
    # StreamFlow SintelMultiframeEval (10 frames): groups of 4 sharing their end frame, end-aligned
    assert strided_windows(10, 4, 3, 0, None) == [([0, 1, 2, 3], (0, 1, 2)), ([3, 4, 5, 6], (0, 1, 2)),
                                                  ([6, 7, 8, 9], (0, 1, 2))]
    assert strided_windows(9, 4, 3, 0, None)[-1] == ([5, 6, 7, 8], (1, 2))  # only the pairs left over


def test_default_protocol_of_each_dataset_and_method():
    assert default_protocol("optical", "sintel", "raft").name == "sintel"
    assert default_protocol("optical", "sintel", "videoflow-mof").name == "sintel-videoflow-mof"
    assert default_protocol("optical", "kitti2015", "streamflow").name == "kitti2015-streamflow"
    assert default_protocol("optical", "kitti2012", "videoflow-bof").name == "kitti2012-videoflow-bof"
    assert default_protocol("optical", "kitti2015", None).name == "kitti2015"  # predictions files
    assert default_protocol("optical", "chairs", "videoflow-mof").name == "default"
    assert default_protocol("scene", "av2", "fnsf").name == "av2"
    assert default_protocol("scene", "kitti-sf-flownet3d", "nsfp").name == "nsfp"
    assert default_protocol("scene", "kitti-sf-flownet3d", "scoop").name == "scoop"
    assert default_protocol("scene", "waymo-fnsf", "fnsf").name == "fnsf"
    assert default_protocol("scene", "pairs", "nn").name == "scene"
    scoop = default_protocol("scene", "kitti-sf-hplflownet", "scoop")
    assert scoop.options() == {"max_depth": 35.0} and scoop.rel_eps == 1e-4
    assert scoop.preparation_for("scoop", "kitti-sf-hplflownet").sample_points == 8192
    assert scoop.preparation_for("scoop", "kitti-sf-flownet3d").sample_points is None  # KITTI_o: every point
    mof = PROTOCOLS["sintel-videoflow-mof"]
    assert (mof.clip_frames, mof.clip_mode, mof.single_window) == (5, "windows", True)
    assert mof.options() == {"frames": 5, "clips": "windows", "step": 3, "repeat_first": 1, "scored_pairs": (1, 2, 3)}
    assert PROTOCOLS["kitti2015-streamflow"].options() == {"frames": 4, "pair_position": 2}
    with pytest.raises(UnknownNameError, match="unknown protocol 'sintel-mof'; valid choices: av2, default"):
        get_protocol("sintel-mof", "optical", "sintel")
    with pytest.raises(UnknownNameError, match="protocol 'av2' scores scene flow, dataset 'sintel' is optical"):
        get_protocol("av2", "optical", "sintel")


def test_list_prints_every_protocol_with_one_line(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    section = out.split("evaluation protocols:\n")[1].splitlines()
    assert len(section) == len(PROTOCOLS)
    assert any(line.split()[0] == "sintel-videoflow-mof" and "5-frame windows" in line for line in section)


# -- the window a network receives -------------------------------------------------------------------
class _WindowSpy:
    """Stands in for a network's ``run_window``: records the padded frames of every call and answers each
    pair position with a constant flow ``100 * call + position`` (so a written prediction names the window
    and position it came from). No network runs: the method adapter, loader, protocol and runner are real."""

    def __init__(self, pairs):
        self.pairs, self.calls = pairs, []

    def __call__(self, model, frames, iters, return_iterations=False):
        import torch

        from motionflow.models.method import WindowFlows

        self.calls.append(frames.detach().clone())
        b, _, _, h, w = frames.shape
        k = len(self.calls) - 1
        return WindowFlows(forward={p: torch.full((b, 2, h, w), 100.0 * k + p) for p in self.pairs})


def _unpad(frames, h, w):
    """Crop the symmetric replicate padding of the method adapter (RAFT sintel mode) off ``(B, T, 3, H', W')``."""
    top = (frames.shape[-2] - h) // 2
    left = (frames.shape[-1] - w) // 2
    return frames[0, :, :, top : top + h, left : left + w].round().byte().numpy()


def test_videoflow_mof_gets_the_official_5_frame_window_on_the_shared_sintel_sample(sample_data, sintel_root, tmp_path, monkeypatch):
    import motionflow.models.videoflow as videoflow

    spy = _WindowSpy(pairs=(1, 2, 3))  # MOF: forward flows of the three inner frames
    monkeypatch.setattr(videoflow, "run_mof_window", spy)
    root = sintel_root
    out = tmp_path / "mof.json"
    assert main(["eval", "--dataset", "sintel", "--root", str(root), "--pass", "clean", "--method", "videoflow-mof",
                 "--method-option", "weights=random", "--iters", "1", "--write-predictions", str(tmp_path / "pred"),
                 "--out", str(out), "--no-progress"]) == 0
    # 4 frames: VideoFlow's MpiSintelTrain prepends frame 1 once: one window [1, 1, 2, 3, 4], one forward pass
    assert len(spy.calls) == 1 and spy.calls[0].shape[1] == 5
    real = [np.moveaxis(read_image(sample_data / "sintel_alley_1" / "clean" / f"frame_{n:04d}.png"), -1, 0) for n in (1, 2, 3, 4)]
    got = _unpad(spy.calls[0], 436, 1024)
    for position, number in enumerate((1, 1, 2, 3, 4)):
        np.testing.assert_array_equal(got[position], real[number - 1])
    assert len({f.tobytes() for f in real}) == 4  # the four real frames are distinct
    # the GT pair n -> n+1 took the flow of window position n (inner frame n): pair 0 never came from [f1, f1]
    for n in (1, 2, 3):
        flow, _ = read_flow(tmp_path / "pred" / "alley_1" / f"frame_{n:04d}.flo")
        assert np.all(flow == n)
    rep = json.loads(out.read_text())
    p = rep["protocol"]
    assert (p["name"], p["clip_frames"], p["clip_mode"], p["single_window"]) == ("sintel-videoflow-mof", 5, "windows", True)
    assert p["dataset_options"] == {"clips": "windows", "frames": 5, "pass_name": "clean", "repeat_first": 1,
                                    "scored_pairs": "(1, 2, 3)", "step": 3}
    assert "VideoFlow evaluate_MOFNet.py" in p["script"]
    assert [s["id"] for s in rep["per_sample"]] == ["alley_1/frame_0001"]


def _synthetic_sintel(root: Path, count: int, size=(40, 56)) -> Path:
    """A Sintel training scene whose frame k is the constant grey 20 * k (zero GT flows)."""
    for k in range(1, count + 1):
        write_image(root / "training" / "clean" / "scene" / f"frame_{k:04d}.png", np.full(size + (3,), 20 * k, np.uint8))
        if k < count:
            write_flow(root / "training" / "flow" / "scene" / f"frame_{k:04d}.flo", np.zeros(size + (2,), np.float32))
    return root


def test_mof_windows_along_a_scene_are_real_distinct_frames(tmp_path, monkeypatch):
    import motionflow.models.videoflow as videoflow

    spy = _WindowSpy(pairs=(1, 2, 3))
    monkeypatch.setattr(videoflow, "run_mof_window", spy)
    root = _synthetic_sintel(tmp_path / "sintel", 8)
    report = evaluate("sintel", "videoflow-mof", root=root, method_options={"weights": "random", "iters": 1},
                      write_predictions=tmp_path / "pred", progress=False)
    frames = [[int(round(float(f[0, 0, 0]))) // 20 for f in call[0]] for call in spy.calls]
    # MpiSintelTrain on 8 frames (1-based numbers): [1 1 2 3 4], [3 4 5 6 7], remainder [4 5 6 7 8]
    assert frames == [[1, 1, 2, 3, 4], [3, 4, 5, 6, 7], [4, 5, 6, 7, 8]]
    assert all(len(set(f)) == 5 for f in frames[1:])  # interior windows: 5 real, distinct frames
    # pair 7 -> 8 from the last window's inner frame at position 3 (call 2): 100 * 2 + 3
    origin = {n: float(read_flow(tmp_path / "pred" / "scene" / f"frame_{n:04d}.flo")[0][0, 0, 0]) for n in range(1, 8)}
    assert origin == {1: 1, 2: 2, 3: 3, 4: 101, 5: 102, 6: 103, 7: 203}
    assert report.num_samples == 3 and report.protocol["name"] == "sintel-videoflow-mof"


def _kitti_tree(root: Path, numbers, size=(40, 56)) -> Path:
    for n in numbers:
        write_image(root / "training" / "image_2" / f"000000_{n:02d}.png", np.full(size + (3,), 10 * n, np.uint8))
    write_flow(root / "training" / "flow_occ" / "000000_10.png", np.zeros(size + (2,), np.float32))
    return root


def test_streamflow_on_kitti_runs_08_to_11_with_the_pair_last(tmp_path, monkeypatch):
    import motionflow.models.streamflow as streamflow

    spy = _WindowSpy(pairs=(0, 1, 2))
    monkeypatch.setattr(streamflow, "run_streamflow_window", spy)
    root = _kitti_tree(tmp_path / "kitti", range(8, 13))
    report = evaluate("kitti2015", "streamflow", root=root, method_options={"weights": "random", "iters": 1},
                      write_predictions=tmp_path / "pred", progress=False)
    assert len(spy.calls) == 1
    assert [int(round(float(f[0, 0, 0]))) // 10 for f in spy.calls[0][0]] == [8, 9, 10, 11]
    flow, _ = read_flow(tmp_path / "pred" / "000000_10.png")
    assert np.all(flow == 2)  # the GT pair _10 -> _11 is the group's last pair (position 2)
    assert report.protocol["name"] == "kitti2015-streamflow" and report.protocol["clip_frames"] == 4


def test_kitti_without_multiview_frames_refuses_or_repeats_with_a_note(sample_data, kitti_root, tmp_path, capsys):
    root = kitti_root
    gt, _ = read_flow(sample_data / "kitti2015_flow_000000" / "flow_gt.png")
    write_flow(tmp_path / "pred" / "000000_10.png", gt + np.array([4.0, 0.0], np.float32))
    base = ["eval", "--dataset", "kitti2015", "--root", str(root), "--protocol", "kitti2015-videoflow-mof",
            "--predictions", str(tmp_path / "pred"), "--no-progress", "--out", str(tmp_path / "r.json")]
    assert main(base) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "expected frame 000000_08.png" in err
    assert "data_scene_flow_multiview.zip" in err and "missing_frames='repeat'" in err
    assert main(base + ["--option", "missing_frames=repeat"]) == 0
    rep = json.loads((tmp_path / "r.json").read_text())
    assert any("1 samples had KITTI multiview frames absent: edge frames _10 / _11 repeated" in n for n in rep["protocol"]["notes"])
    assert rep["protocol"]["clip_frames"] == 5 and rep["metrics"]["epe"]["value"] == pytest.approx(4.0, abs=1e-6)


def test_a_protocol_option_the_user_overrides_is_noted(tmp_path):
    root = _synthetic_sintel(tmp_path / "sintel", 4)
    write_flow(tmp_path / "pred" / "scene" / "frame_0001.flo", np.zeros((40, 56, 2), np.float32))
    for n in (2, 3):
        write_flow(tmp_path / "pred" / "scene" / f"frame_{n:04d}.flo", np.zeros((40, 56, 2), np.float32))
    report = evaluate("sintel", predictions_dir=tmp_path / "pred", root=root, protocol="sintel-videoflow-mof",
                      dataset_options={"step": 1}, progress=False)
    assert "dataset option step=1 replaces the protocol's 3" in report.protocol["notes"]
    assert report.protocol["dataset_options"]["step"] == 1
    assert report.protocol["clip_frames"] == 5  # the protocol's own window
    report = evaluate("sintel", predictions_dir=tmp_path / "pred", root=root, protocol="sintel-videoflow-mof",
                      dataset_options={"frames": 6, "step": 1}, progress=False)
    assert report.protocol["clip_frames"] == 6  # what the method received, not the protocol's 5


# -- KITTI devkit metrics ------------------------------------------------------------------------------
def _flow_sample(sample_id, gt, pred_offset, valid, occluded=None, foreground=None):
    frames = np.zeros((2, 3) + gt.shape[1:], np.uint8)
    s = FlowSample(sample_id, frames, flow=gt[None], valid=valid[None], occluded=None if occluded is None else occluded[None],
                   meta={} if foreground is None else {"foreground": foreground[None]})
    return s, gt[None] + pred_offset


class _Offset:
    name = "offset-test"

    def __init__(self, preds):
        self.preds = preds

    def __call__(self, frames):
        import torch

        key = int(frames[0, 0, 0, 0, 0])
        return torch.from_numpy(self.preds[key])[None]


def test_kitti2012_counts_outliers_by_absolute_error_only(tmp_path):
    """|gt| = 100 px and epe = 4 px: an outlier for the 2012 devkit (epe > 3), not for 2015's Fl (4 < 5 % of 100)."""
    h, w = 6, 10
    gt = np.zeros((2, h, w), np.float32)
    gt[0] = 100.0
    valid_a = np.ones((h, w), bool)
    valid_b = np.zeros((h, w), bool)
    valid_b[:2] = True  # image b: 20 valid pixels, all with epe 2.5 (out2 only)
    occ = np.zeros((h, w), bool)
    occ[0, :5] = True  # 5 occluded pixels in image a
    a, pa = _flow_sample("000000_10", gt, np.array([4.0, 0], np.float32)[:, None, None], valid_a, occ)
    b, pb = _flow_sample("000001_10", gt, np.array([0, 2.5], np.float32)[:, None, None], valid_b, np.zeros((h, w), bool))
    b.frames[:] = 1
    ds = SampleList([a, b], name="kitti2012")
    report = evaluate(ds, _Offset({0: pa, 1: pb}), protocol="kitti2012", progress=False)
    m = report.metrics
    assert "fl_all" not in m and "px1" not in m
    # image-mean (the devkit's statMean over images): out3 = (100 % + 0 %) / 2; pooled: 60 / 80 pixels
    assert m["out3"]["value"] == pytest.approx(50.0) and m["out3"]["reduction"] == "image" and m["out3"]["unit"] == "%"
    assert m["out3"]["alternatives"]["pixel"] == pytest.approx(75.0)
    assert m["out2"]["value"] == pytest.approx(100.0) and m["out4"]["value"] == pytest.approx(0.0)  # strict: 4 > 4 is false
    assert m["epe"]["value"] == pytest.approx((4.0 + 2.5) / 2) and m["epe"]["alternatives"]["pixel"] == pytest.approx((60 * 4 + 20 * 2.5) / 80)
    assert m["out3_noc"]["value"] == pytest.approx(50.0) and m["epe_noc"]["value"] == pytest.approx(3.25)
    assert "out3_occ" not in m  # the 2012 devkit reports Noc and All only
    same = evaluate(SampleList([a, b], name="kitti2015"), _Offset({0: pa, 1: pb}), protocol="kitti2015", progress=False)
    assert same.value("fl_all") == 0.0  # the 2015 rule (abs and rel) calls none of them outliers


def test_kitti2015_fl_bg_and_fl_fg_from_the_object_map():
    h, w = 4, 5
    gt = np.zeros((2, h, w), np.float32)
    gt[0] = 10.0
    fg = np.zeros((h, w), bool)
    fg[:, :2] = True  # 8 foreground pixels
    offset = np.zeros((2, h, w), np.float32)
    offset[0][fg] = 4.0  # foreground: epe 4 > 3 and > 0.5 -> outliers; background exact
    offset[0][3, 4] = 4.0  # plus one background outlier
    s, pred = _flow_sample("000000_10", gt, offset, np.ones((h, w), bool), foreground=fg)
    report = evaluate([s], _Offset({0: pred}), protocol="kitti2015", progress=False)
    assert report.value("fl_fg") == pytest.approx(100.0)
    assert report.value("fl_bg") == pytest.approx(100.0 / 12)
    assert report.value("fl_all") == pytest.approx(100.0 * 9 / 20)
    no_map, pred = _flow_sample("000001_10", gt, offset, np.ones((h, w), bool))
    assert "fl_fg" not in evaluate([no_map], _Offset({0: pred}), protocol="kitti2015", progress=False).metrics
