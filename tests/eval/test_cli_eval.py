"""``motionflow eval`` end to end: generated trees, the shared real samples, bad usage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from motionflow.cli.main import main
from motionflow.datasets import get_dataset
from motionflow.eval import write_prediction
from motionflow.io import read_flow, read_image, write_flow


def _report(path: Path) -> dict:
    return json.loads(Path(path).read_text())


# -- bad usage ------------------------------------------------------------------------------------
def test_unknown_dataset_lists_valid_names_exit_2(tmp_path, capsys):
    rc = main(["eval", "--dataset", "sintle", "--root", str(tmp_path), "--method", "raft", "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "unknown dataset 'sintle'" in err and "sintel" in err and "kitti2015" in err and "av2" in err


def test_unknown_method_lists_valid_names_exit_2(tmp_path, capsys):
    rc = main(["eval", "--dataset", "synthetic-flow", "--method", "rafft", "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown optical-flow method 'rafft'" in err and "raft" in err and "opencv-dis" in err
    rc = main(["eval", "--dataset", "synthetic-lidar", "--method", "nsfpp", "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown scene-flow method 'nsfpp'" in err and "nsfp" in err and "fnsf" in err
    assert not (tmp_path / "r.json").exists()


def test_argument_errors_exit_2(tmp_path, capsys):
    out = str(tmp_path / "r.json")
    assert main(["eval", "--dataset", "sintel", "--method", "raft", "--out", out]) == 2
    assert "--root is required" in capsys.readouterr().err
    assert main(["eval", "--dataset", "synthetic-flow", "--predictions", str(tmp_path), "--iters", "3", "--out", out]) == 2
    assert "need --method" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # argparse: unknown engine, and --method with --predictions
        main(["eval", "--dataset", "synthetic-flow", "--method", "raft", "--engine", "spark", "--out", out])
    assert exc.value.code == 2 and "invalid choice: 'spark'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--dataset", "synthetic-flow", "--method", "raft", "--predictions", str(tmp_path), "--out", out])
    assert exc.value.code == 2


# -- generated trees ------------------------------------------------------------------------------
def test_predictions_on_generated_synthetic_flow(tmp_path, capsys):
    opts = {"num_samples": 3, "size": (32, 48)}
    ds = get_dataset("synthetic-flow", None, **opts)
    for i in range(len(ds)):
        s = ds[i]
        write_prediction(tmp_path / "pred", "synthetic-flow", s, s.flow + np.array([0.0, 1.5], np.float32)[None, :, None, None])
    out = tmp_path / "r.json"
    rc = main(["eval", "--dataset", "synthetic-flow", "--option", "num_samples=3", "--option", "size=(32, 48)",
               "--predictions", str(tmp_path / "pred"), "--out", str(out), "--no-progress"])
    assert rc == 0
    rep = _report(out)
    assert rep["dataset"] == "synthetic-flow" and len(rep["per_sample"]) == 3
    assert rep["metrics"]["epe"]["value"] == pytest.approx(1.5, abs=1e-5)
    assert rep["metrics"]["px1"]["value"] == 0.0 and rep["metrics"]["px3"]["value"] == 1.0
    assert "| epe | 1.5000 | px | pixel |" in capsys.readouterr().out
    assert out.with_suffix(".csv").is_file() and out.with_suffix(".md").is_file()
    assert out.with_name("r.samples.jsonl").is_file()


def test_scene_method_write_predictions_then_score_them(tmp_path):
    base = ["eval", "--dataset", "synthetic-lidar", "--option", "num_samples=2", "--option", "beams=8",
            "--option", "azimuths=64", "--no-progress"]
    # the registered method is built by each of the 2 spawned workers
    assert main(base + ["--method", "zero", "--workers", "2", "--out", str(tmp_path / "a.json"),
                        "--write-predictions", str(tmp_path / "p")]) == 0
    ds = get_dataset("synthetic-lidar", None, num_samples=2, beams=8, azimuths=64)
    files = sorted(p.name for p in (tmp_path / "p").iterdir())
    assert files == [f"{i}.npz" for i in ds.ids]
    with np.load(tmp_path / "p" / files[0]) as data:
        assert data["flow"].shape == (len(ds[0].pc1), 3) and not data["flow"].any()
    assert main(base + ["--predictions", str(tmp_path / "p"), "--out", str(tmp_path / "b.json")]) == 0
    a, b = _report(tmp_path / "a.json"), _report(tmp_path / "b.json")
    assert a["metrics"] == b["metrics"]
    expected = np.mean([np.linalg.norm(ds[i].flow.astype(np.float64), axis=1).mean() for i in range(2)])
    assert a["metrics"]["epe3d"]["value"] == pytest.approx(expected, rel=1e-12)
    assert a["method"] == "zero" and a["runtime"]["workers"] == 2 and b["runtime"]["workers"] == 1


# -- the shared real samples -----------------------------------------------------------------------
def test_sintel_predictions_with_known_offset(sample_data, sintel_root, tmp_path):
    """0.5 px off at matched pixels, 2 px off at unmatched ones (frame 2's occlusion mask): swapping or
    ignoring the mask changes every number below."""
    from motionflow.io import read_sintel_mask

    root = sintel_root
    pred = tmp_path / "pred"
    src = sample_data / "sintel_alley_1"
    occ2 = read_sintel_mask(src / "occlusions" / "frame_0002.png")
    scored = {}  # per frame: (valid, occluded) as the loader scores them (invalid/ pixels removed for frame 2)
    for n in (1, 2, 3):
        flow, valid = read_flow(src / "flow" / f"frame_{n:04d}.flo")
        occ = occ2 if n == 2 else np.zeros_like(valid)
        if n == 2:
            valid = valid & ~read_sintel_mask(src / "invalid" / "frame_0002.png")
        offset = np.where(occ[..., None], np.array([1.2, 1.6], np.float32), np.array([0.3, 0.4], np.float32))
        write_flow(pred / "alley_1" / f"frame_{n:04d}.flo", np.where(np.isfinite(flow), flow + offset, 0.0))
        scored[n] = (valid, occ)
    n_valid = sum(v.sum() for v, _ in scored.values())
    n_occ = sum((v & o).sum() for v, o in scored.values())
    assert n_occ > 0
    out = tmp_path / "sintel.json"
    rc = main(["eval", "--dataset", "sintel", "--root", str(root), "--pass", "final", "--predictions", str(pred),
               "--out", str(out), "--no-progress"])
    assert rc == 0
    rep = _report(out)
    assert [s["id"] for s in rep["per_sample"]] == ["alley_1/frame_0001", "alley_1/frame_0002", "alley_1/frame_0003"]
    m = rep["metrics"]
    assert m["epe"]["reduction"] == "pixel" and m["epe"]["unit"] == "px"
    assert m["epe"]["value"] == pytest.approx((0.5 * (n_valid - n_occ) + 2.0 * n_occ) / n_valid, abs=1e-5)
    assert rep["split"] == "training"  # the loader's default split, recorded although --split was omitted
    assert rep["protocol"]["name"] == "sintel" and rep["protocol"]["clip_frames"] == 2
    assert rep["protocol"]["dataset_options"] == {"clips": "tile", "frames": 2, "pass_name": "final"}
    assert out.with_suffix(".md").read_text().startswith("**sintel** (training, clips=tile, frames=2, pass_name=final), method ")
    # only frame 2 has an occlusion mask: no dataset-level matched/unmatched pooled over that one pair
    # beside an `epe` over all three, but a note, and frame 2's own entry has them
    assert "epe_matched" not in m and "epe_noc" not in m and "epe_occ" not in m
    assert any("occlusion masks exist for only some" in n for n in rep["protocol"]["notes"])
    frame2 = rep["per_sample"][1]["metrics"]
    assert frame2["epe_matched"] == pytest.approx(0.5, abs=1e-5)
    assert frame2["epe_unmatched"] == pytest.approx(2.0, abs=1e-5)
    assert "epe_matched" not in rep["per_sample"][0]["metrics"]
    assert m["px1"]["value"] == pytest.approx((n_valid - n_occ) / n_valid, abs=1e-12) and m["px3"]["value"] == 1.0


def test_kitti_predictions_known_epe_and_fl_all(sample_data, kitti_root, tmp_path):
    root = kitti_root
    gt, valid = read_flow(sample_data / "kitti2015_flow_000000" / "flow_gt.png")
    pred = tmp_path / "pred"
    write_flow(pred / "000000_10.png", gt + np.array([4.0, 0.0], np.float32))  # 4 px: exact in 1/64 px steps
    out = tmp_path / "kitti.json"
    assert main(["eval", "--dataset", "kitti2015", "--root", str(root), "--predictions", str(pred), "--out", str(out),
                 "--no-progress"]) == 0
    rep = _report(out)
    assert rep["protocol"]["default_reductions"] == {"epe": "image", "px1": "pixel", "px3": "pixel", "px5": "pixel", "fl_all": "pixel"}
    m = rep["metrics"]
    assert m["epe"]["reduction"] == "image" and m["epe"]["value"] == pytest.approx(4.0, abs=1e-6)
    # Fl: epe 4 > 3 px everywhere, so a pixel is an outlier iff 4 > 5 % of |gt|, i.e. |gt| < 80 px
    mag = np.linalg.norm(gt[valid].astype(np.float64), axis=1)
    assert m["fl_all"]["reduction"] == "pixel"
    assert m["fl_all"]["value"] == pytest.approx(100.0 * np.mean(4.0 > 0.05 * mag), rel=1e-12)
    assert 0 < m["fl_all"]["value"] < 100


def test_av2_predictions_threeway(sample_data, tmp_path):
    ds = get_dataset("av2", sample_data / "av2_sceneflow_7fab2350")
    sample = ds[0]
    write_prediction(tmp_path / "pred", "av2", sample, sample.flow + np.array([0.0, 0.0, 0.1], np.float32))
    out = tmp_path / "av2.json"
    assert main(["eval", "--dataset", "av2", "--root", str(sample_data / "av2_sceneflow_7fab2350"),
                 "--predictions", str(tmp_path / "pred"), "--out", str(out), "--no-progress"]) == 0
    rep = _report(out)
    m = rep["metrics"]
    assert m["epe3d"]["value"] == pytest.approx(0.1, abs=1e-5)
    for part in ("epe_fg_dynamic", "epe_fg_static", "epe_bg_static"):
        assert m[part]["count"] > 0
        assert m[part]["value"] == pytest.approx(0.1, abs=5e-3)  # float16 rounding of the official files
    assert m["epe_threeway"]["reduction"] == "point"
    assert m["bucketed_static_epe/BACKGROUND"]["value"] == pytest.approx(0.1, abs=1e-5)


class _ZeroOptical:
    name = "zero-optical"
    clip_length = 2

    def __call__(self, frames):
        import torch

        from motionflow.types import FlowPrediction

        b, t, _, h, w = frames.shape
        return FlowPrediction(flow=torch.zeros(b, t - 1, 2, h, w))


def test_submission_files_for_a_test_split(sample_data, tmp_path):
    from motionflow.errors import ShapeError
    from motionflow.eval import evaluate

    src = sample_data / "sintel_alley_1"
    root = tmp_path / "sintel"
    (root / "test" / "final").mkdir(parents=True)
    (root / "test" / "final" / "alley_1").symlink_to(src / "final", target_is_directory=True)
    sub = tmp_path / "submission" / "final"
    report = evaluate("sintel", _ZeroOptical(), root=root, split="test", dataset_options={"pass": "final"},
                      write_predictions=sub, progress=False)
    assert sorted(str(p.relative_to(sub)) for p in sub.rglob("*.flo")) == [f"alley_1/frame_{n:04d}.flo" for n in (1, 2, 3)]
    flow, valid = read_flow(sub / "alley_1" / "frame_0002.flo")
    assert flow.shape == (436, 1024, 2) and valid.all() and not flow.any()
    assert report.num_samples == 3 and report.per_sample[0]["metrics"] == {}
    with pytest.raises(ShapeError, match="expected ground-truth flow to evaluate"):
        evaluate("sintel", _ZeroOptical(), root=root, split="test", dataset_options={"pass": "final"}, progress=False)


def test_av2_half_way_prediction_on_the_shared_log(sample_data):
    """Flow = ego motion + half the object motion: every moving bucket has EPE == speed / 2 after ego
    compensation of both flows, so the normalized dynamic EPE is 0.5 per class; forgetting to compensate
    the prediction, or measuring speed on the raw ground truth, moves it away from 0.5."""
    from motionflow.eval import evaluate
    from motionflow.eval.scene import ego_motion_flow

    ds = get_dataset("av2", sample_data / "av2_sceneflow_7fab2350")
    sample = ds[0]
    ego = ego_motion_flow(sample.pc1, sample.ego_motion)

    class HalfWay:
        name = "half-way"

        def __call__(self, pc1, pc2):
            return (ego + 0.5 * (sample.flow - ego)).astype(np.float32)

    report = evaluate(ds, HalfWay(), progress=False)
    m = report.metrics
    assert report.protocol["av2"] is True and report.protocol["name"] == "av2"
    for cls in ("CAR", "PEDESTRIAN"):  # the moving classes in this log
        assert m[f"bucketed_dynamic_norm_epe/{cls}"]["value"] == pytest.approx(0.5, rel=1e-5)
    assert m["bucketed_dynamic_norm_epe"]["value"] == pytest.approx(0.5, rel=1e-5)
    # every dynamic point is off by half its motion: the mean over them, as float16 files hold the flows
    dyn = sample.meta["dynamic"] & (sample.classes != 0) & sample.valid & ~sample.ground1
    dyn &= (np.abs(sample.pc1[:, 0]) <= 50) & (np.abs(sample.pc1[:, 1]) <= 50)
    half = 0.5 * np.linalg.norm((sample.flow - ego)[dyn], axis=1).mean()
    assert m["epe_fg_dynamic"]["value"] == pytest.approx(half, rel=2e-3) and m["epe_fg_dynamic"]["count"] == dyn.sum()



def _dis_by_hand(first, second) -> np.ndarray:
    """The registered method on one pair, called directly (the oracle of the eval plumbing)."""
    import torch

    from motionflow.registry import get_optical_flow_method

    frames = torch.from_numpy(np.stack([read_image(first), read_image(second)]).transpose(0, 3, 1, 2)).float()[None]
    return get_optical_flow_method("opencv-dis")(frames).flow[0, 0].numpy().transpose(1, 2, 0).astype(np.float64)


def test_opencv_dis_baseline_on_kitti_and_sintel(sample_data, kitti_root, sintel_root, tmp_path):
    """--method opencv-dis (MEDIUM): the report equals the method run by hand, scored with the devkit formulas."""
    from motionflow.io import read_sintel_mask

    root = kitti_root
    out = tmp_path / "dis_kitti.json"
    assert main(["eval", "--dataset", "kitti2015", "--root", str(root), "--method", "opencv-dis", "--out", str(out),
                 "--no-progress"]) == 0
    m = _report(out)["metrics"]
    src = sample_data / "kitti2015_flow_000000"
    dis = _dis_by_hand(src / "000000_10.png", src / "000000_11.png")
    gt, valid = read_flow(src / "flow_gt.png")
    epe = np.linalg.norm(dis - gt, axis=2)[valid]
    mag = np.linalg.norm(gt.astype(np.float64), axis=2)[valid]
    assert m["epe"]["value"] == pytest.approx(epe.mean(), rel=1e-12)
    assert m["fl_all"]["value"] == pytest.approx(100 * np.mean((epe > 3) & (epe > 0.05 * mag)), rel=1e-12)

    out = tmp_path / "dis_sintel.json"
    assert main(["eval", "--dataset", "sintel", "--root", str(sintel_root), "--pass", "clean",
                 "--method", "opencv-dis", "--max-samples", "2", "--out", str(out), "--no-progress"]) == 0
    rep = _report(out)
    assert len(rep["per_sample"]) == 2 and rep["method"] == "opencv-dis" and rep["metrics"]["epe"]["reduction"] == "pixel"
    sintel = sample_data / "sintel_alley_1"
    sums = counts = 0.0
    for n in (1, 2):
        flow, valid = read_flow(sintel / "flow" / f"frame_{n:04d}.flo")
        if (sintel / "invalid" / f"frame_{n:04d}.png").is_file():
            valid &= ~read_sintel_mask(sintel / "invalid" / f"frame_{n:04d}.png")
        err = np.linalg.norm(_dis_by_hand(sintel / "clean" / f"frame_{n:04d}.png", sintel / "clean" / f"frame_{n + 1:04d}.png")
                             - flow, axis=2)
        sums, counts = sums + err[valid].sum(), counts + valid.sum()
    assert rep["metrics"]["epe"]["value"] == pytest.approx(sums / counts, rel=1e-12)  # pixel-pooled over both pairs
    print(f"opencv-dis: KITTI 000000 EPE {m['epe']['value']:.3f} Fl-all {m['fl_all']['value']:.2f}%; "
          f"Sintel alley_1 clean EPE {rep['metrics']['epe']['value']:.3f}")


def test_method_options_reach_the_method(tmp_path, capsys):
    out = str(tmp_path / "r.json")
    # an unknown preset is rejected by the classical method itself: the option was passed through
    rc = main(["eval", "--dataset", "synthetic-flow", "--option", "num_samples=1", "--option", "size=(32, 48)",
               "--method", "classical", "--method-option", "preset=sloppy", "--out", out, "--no-progress"])
    assert rc == 2  # an unknown name is bad usage
    assert "classical preset 'sloppy' is unknown; valid choices: fast, default, accurate" in capsys.readouterr().err
    assert main(["eval", "--dataset", "synthetic-flow", "--method", "classical", "--method-option", "preset",
                 "--out", out]) == 2
    assert "--method-option: expected KEY=VALUE" in capsys.readouterr().err
    assert main(["eval", "--dataset", "synthetic-flow", "--predictions", str(tmp_path), "--method-option", "a=1",
                 "--out", out]) == 2
