"""``motionflow estimate`` end to end: a synthetic video written with OpenCV, its flows compared with
the synthetic ground truth; resume after an interruption; a corrupt frame in the middle."""

import dataclasses
import json

import numpy as np
import pytest

from motionflow.cli.main import main
from motionflow.datasets.synthetic import synthetic_clip
from motionflow.inference import process_video
from motionflow.io import read_flow, read_image
from motionflow.io.video import VideoWriter


@pytest.fixture(scope="module")
def clip():
    return synthetic_clip(num_frames=5, size=(64, 96), seed=4)


def _write_frames(folder, clip):
    import cv2

    folder.mkdir()
    for i, f in enumerate(clip.frames):
        cv2.imwrite(str(folder / f"frame_{i + 1:04d}.png"), f.transpose(1, 2, 0)[:, :, ::-1])


def test_video_end_to_end_matches_ground_truth(tmp_path, clip, capsys):
    video = tmp_path / "syn.mp4"
    with VideoWriter(video, fps=5) as w:
        for f in clip.frames:
            w.write(f.transpose(1, 2, 0))
    out = tmp_path / "out"
    rc = main(["estimate", str(video), "--out", str(out), "--preset", "fast", "--viz", "--preview", "--no-progress"])
    assert rc == 0
    assert "4 flows written" in capsys.readouterr().out
    for i in range(4):
        flow, valid = read_flow(out / f"frame_{i:06d}.flo")
        assert valid.all()
        e = np.linalg.norm(flow.transpose(2, 0, 1) - clip.flow[i], axis=0)[~clip.occluded[i]]
        assert e.mean() < 1.0  # mp4v compression noise included
        assert read_image(out / "viz" / f"frame_{i:06d}.png").shape == (64, 96, 3)
    import cv2

    cap = cv2.VideoCapture(str(out / "preview.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    cap.release()
    report = json.loads((out / "estimate_report.json").read_text())
    assert report["written"] == 4 and report["unreadable_frames"] == []


def test_folder_png_format_and_max_size(tmp_path, clip):
    _write_frames(tmp_path / "frames", clip)
    out = tmp_path / "out"
    rc = main(["estimate", str(tmp_path / "frames"), "--out", str(out), "--format", "png", "--max-size", "48",
               "--method", "opencv-dis", "--no-progress"])
    assert rc == 0
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["frame_0001.png", "frame_0002.png", "frame_0003.png", "frame_0004.png"]
    # the same run at full size: the half-size flows, scaled back, have its magnitudes and lie close to
    # it (measured: 0.46-0.59 px apart); flows not scaled back are half as long (1.14-1.31 px apart)
    full = process_video(tmp_path / "frames", tmp_path / "full", method="opencv-dis", fmt="png", progress=False)
    assert len(full.written) == 4
    for name in names:
        flow, valid = read_flow(out / name)
        ref, _ = read_flow(tmp_path / "full" / name)
        assert flow.shape == (64, 96, 2) and valid.all()
        ratio = np.linalg.norm(flow, axis=-1).mean() / np.linalg.norm(ref, axis=-1).mean()
        assert 0.85 < ratio < 1.15, (name, ratio)
        assert np.linalg.norm(flow - ref, axis=-1).mean() < 0.8, name


class Interrupting:
    """Wraps a method and raises KeyboardInterrupt on its ``fail_at``-th call."""

    def __init__(self, inner, fail_at):
        self.inner, self.fail_at, self.calls = inner, fail_at, 0
        self.clip_length, self.name = 2, "interrupting"

    def describe(self):  # the run's identity is the wrapped method's (fail_at and calls are not)
        return self.inner

    def __call__(self, frames):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return self.inner(frames)


def test_resume_after_interruption(tmp_path, clip):
    from motionflow.registry import get_optical_flow_method

    _write_frames(tmp_path / "frames", clip)
    out = tmp_path / "out"
    dis = get_optical_flow_method("opencv-dis")
    with pytest.raises(KeyboardInterrupt):
        process_video(tmp_path / "frames", out, method=Interrupting(dis, fail_at=3), progress=False)
    done = sorted(p.name for p in out.glob("*.flo"))
    assert done == ["frame_0001.flo", "frame_0002.flo"]
    stamps = {n: (out / n).stat().st_mtime_ns for n in done}
    counting = Interrupting(dis, fail_at=-1)
    report = process_video(tmp_path / "frames", out, method=counting, progress=False)
    assert report.skipped == 2 and report.written == ["frame_0003.flo", "frame_0004.flo"]
    assert counting.calls == 2  # only the missing pairs were computed
    assert {n: (out / n).stat().st_mtime_ns for n in done} == stamps
    # the resumed result equals an uninterrupted run
    full = process_video(tmp_path / "frames", tmp_path / "full", method=dis, progress=False)
    assert len(full.written) == 4
    for n in ["frame_0003.flo", "frame_0004.flo"]:
        np.testing.assert_array_equal(read_flow(out / n)[0], read_flow(tmp_path / "full" / n)[0])


def test_corrupt_frame_in_the_middle(tmp_path, clip, capsys):
    _write_frames(tmp_path / "frames", clip)
    (tmp_path / "frames" / "frame_0003.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "out"
    rc = main(["estimate", str(tmp_path / "frames"), "--out", str(out), "--method", "opencv-dis", "--format", "npz",
               "--no-progress"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "1 frame skipped: index 2 (frame_0003.png: OpenCV cannot decode the image)" in err
    # pairs (0,1) and (3,4) survive; the two pairs touching frame index 2 have no flow
    assert sorted(p.name for p in out.glob("*.npz")) == ["frame_0001.npz", "frame_0004.npz"]
    report = json.loads((out / "estimate_report.json").read_text())
    assert report["unreadable_frames"] == [2]
    assert report["unreadable_reasons"] == {"2": "frame_0003.png: OpenCV cannot decode the image"}


def test_image_file_inputs_and_usage_errors(tmp_path, clip, capsys):
    _write_frames(tmp_path / "frames", clip)
    files = [str(tmp_path / "frames" / f"frame_{i:04d}.png") for i in (1, 2, 3)]
    rc = main(["estimate", *files, "--out", str(tmp_path / "o"), "--method", "opencv-farneback", "--no-progress"])
    assert rc == 0 and len(list((tmp_path / "o").glob("*.flo"))) == 2
    assert main(["estimate", *files, "--out", str(tmp_path / "o2"), "--method", "nope"]) == 2
    assert "unknown optical-flow method 'nope'" in capsys.readouterr().err
    assert main(["estimate", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "o3")]) == 1
    assert "missing.mp4: expected" in capsys.readouterr().err
    assert main(["estimate", *files, "--out", str(tmp_path / "o4"), "--preset", "fast", "--method", "opencv-dis"]) == 2


def test_reynolds_rgb_format(tmp_path, clip):
    _write_frames(tmp_path / "frames", clip)
    out = tmp_path / "r"
    assert main(["estimate", str(tmp_path / "frames"), "--out", str(out), "--format", "reynolds-rgb", "--no-progress"]) == 0
    img = read_image(out / "frame_0001.png")
    grey = (clip.frames[0].transpose(1, 2, 0) @ np.array([0.299, 0.587, 0.114])).round()
    assert np.abs(img[..., 2].astype(float) - grey).max() <= 1  # B channel = grey frame


def test_rerun_after_a_corrupt_frame_recomputes_only_the_missing_pairs(tmp_path, clip):
    from motionflow.registry import get_optical_flow_method

    _write_frames(tmp_path / "frames", clip)
    (tmp_path / "frames" / "frame_0002.png").write_bytes(b"broken")
    out = tmp_path / "out"
    dis = get_optical_flow_method("opencv-dis")
    first = process_video(tmp_path / "frames", out, method=dis, progress=False)
    assert first.written == ["frame_0003.flo", "frame_0004.flo"] and first.unreadable == [1]
    counting = Interrupting(dis, fail_at=-1)
    again = process_video(tmp_path / "frames", out, method=counting, progress=False)
    assert again.written == [] and again.unreadable == [1] and again.skipped == 2
    assert counting.calls == 0  # pairs beyond the bad frame exist: nothing recomputed


def test_preview_has_every_flow_when_the_video_frame_count_is_an_underestimate(tmp_path, clip, monkeypatch):
    """Containers may announce too few frames (or 0): every frame is still read, and the preview
    must still show every flow written (it used to stop at the announced count)."""
    from motionflow.io.video import FrameSource

    video = tmp_path / "syn.mp4"
    with VideoWriter(video, fps=5) as w:
        for f in clip.frames:
            w.write(f.transpose(1, 2, 0))
    probe = FrameSource._probe_video

    def short_count(self):
        probe(self)
        self._count = 2

    monkeypatch.setattr(FrameSource, "_probe_video", short_count)
    report = process_video(video, tmp_path / "out", method="opencv-dis", preview=True, progress=False)
    assert len(report.written) == 4
    import cv2

    cap = cv2.VideoCapture(str(report.preview))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    cap.release()


def test_several_inputs_go_to_one_folder_each_and_names_must_differ(tmp_path, clip, capsys):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        _write_frames(tmp_path / name / "seq", clip)
    out = tmp_path / "out"
    args = ["--out", str(out), "--method", "opencv-dis", "--no-progress"]
    rc = main(["estimate", str(tmp_path / "a" / "seq"), str(tmp_path / "b" / "seq"), *args])
    assert rc == 1
    err = capsys.readouterr().err
    assert "distinct names" in err and "both named 'seq'" in err
    assert not out.exists()  # refused before anything was written
    (tmp_path / "b" / "seq").rename(tmp_path / "b" / "seq2")
    assert main(["estimate", str(tmp_path / "a" / "seq"), str(tmp_path / "b" / "seq2"), *args]) == 0
    assert len(list((out / "seq").glob("*.flo"))) == 4 and len(list((out / "seq2").glob("*.flo"))) == 4
    # '..' names the folder it leads to: the flows stay inside --out (they went to out/.. = tmp_path)
    work = tmp_path / "b" / "seq2" / "work"
    work.mkdir()
    out3 = tmp_path / "out3"
    assert main(["estimate", str(work / ".."), str(tmp_path / "a" / "seq"), "--out", str(out3), *args[2:]]) == 0
    assert len(list((out3 / "seq2").glob("*.flo"))) == 4 and not list(tmp_path.glob("*.flo"))
    assert not (tmp_path / "estimate_manifest.json").exists()


def test_image_files_whose_flows_would_share_a_name_are_refused(tmp_path, clip):
    from motionflow.errors import FormatError

    for name in ("a", "b"):
        _write_frames(tmp_path / name, clip)
    files = [tmp_path / "a" / "frame_0001.png", tmp_path / "b" / "frame_0001.png", tmp_path / "a" / "frame_0002.png"]
    with pytest.raises(FormatError, match=r"frame_0001.png: expected frames with distinct file names.*'frame_0001'"):
        process_video(files, tmp_path / "out", method="opencv-dis", progress=False)
    # the last frame names no flow, so it may share a name
    files = [tmp_path / "a" / "frame_0001.png", tmp_path / "b" / "frame_0001.png"]
    assert len(process_video(files, tmp_path / "out2", method="opencv-dis", progress=False).written) == 1


def test_flows_never_overwrite_the_input_frames(tmp_path, clip):
    from motionflow.errors import FormatError

    _write_frames(tmp_path / "frames", clip)
    before = sorted(p.stat().st_mtime_ns for p in (tmp_path / "frames").iterdir())
    with pytest.raises(FormatError, match=r"flow frame_0001.png would overwrite the frame"):
        process_video(tmp_path / "frames", tmp_path / "frames", method="opencv-dis", fmt="png", progress=False)
    assert sorted(p.stat().st_mtime_ns for p in (tmp_path / "frames").iterdir()) == before
    # .flo files beside the frames are fine
    report = process_video(tmp_path / "frames", tmp_path / "frames", method="opencv-dis", progress=False)
    assert len(report.written) == 4


def test_a_method_that_cannot_be_built_leaves_no_output_folder(tmp_path, clip):
    from motionflow.errors import CheckpointError

    _write_frames(tmp_path / "frames", clip)
    with pytest.raises(CheckpointError, match="needs its official weights"):
        process_video(tmp_path / "frames", tmp_path / "out", method="raft", progress=False)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------- run identity and resume
def test_interrupted_and_resumed_classical_run_is_bit_identical(tmp_path, monkeypatch):
    """classical warm-starts each clip from the previous clip's last flow: a resume must restore it.
    10 frames = clips [0, 8) and [7, 10); the run is interrupted while writing the second clip's flows,
    with --max-size (the warm start lives at processing resolution)."""
    import shutil

    from motionflow.inference import video
    from motionflow.inference.resume import read_progress, write_progress

    clip = synthetic_clip(num_frames=10, size=(48, 64), seed=7)
    _write_frames(tmp_path / "frames", clip)
    kwargs = dict(method="classical", preset="fast", max_size=40, progress=False)
    full = process_video(tmp_path / "frames", tmp_path / "full", **kwargs)
    assert len(full.written) == 9

    write_outputs, writes = video._write_outputs, []

    def interrupt_at_pair_8(path, *args, **kwargs):
        writes.append(path.name)
        if len(writes) == 9:  # pairs 0..7 written, pair 8 not: the second clip is half done
            raise KeyboardInterrupt
        write_outputs(path, *args, **kwargs)

    monkeypatch.setattr(video, "_write_outputs", interrupt_at_pair_8)
    with pytest.raises(KeyboardInterrupt):
        process_video(tmp_path / "frames", tmp_path / "out", **kwargs)
    monkeypatch.setattr(video, "_write_outputs", write_outputs)
    saved = read_progress(tmp_path / "out")
    assert saved.next == 7 and not saved.complete and saved.warm_start.shape == (1, 2, 30, 40)
    shutil.copytree(tmp_path / "out", tmp_path / "cold")

    resumed = process_video(tmp_path / "frames", tmp_path / "out", **kwargs)
    assert resumed.skipped == 7 and resumed.written == ["frame_0008.flo", "frame_0009.flo"]  # pair 7 again
    for name in full.written:
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name
    report = json.loads((tmp_path / "out" / "estimate_report.json").read_text())
    assert report["written"] == 9 and report["sessions"] == 2 and report["frames"] == 10
    assert report["session"]["written"] == 2 and report["session"]["skipped"] == 7

    # the same resume without the warm start (what resume did before) gives other flows for pair 7
    write_progress(tmp_path / "cold", dataclasses.replace(saved, warm_start=None))
    process_video(tmp_path / "frames", tmp_path / "cold", **kwargs)
    cold, _ = read_flow(tmp_path / "cold" / "frame_0008.flo")
    ref, _ = read_flow(tmp_path / "full" / "frame_0008.flo")
    assert np.abs(cold - ref).max() > 1e-3


def _tiny_run(tmp_path, clip, **kwargs):
    _write_frames(tmp_path / "frames", clip)
    out = tmp_path / "out"
    process_video(tmp_path / "frames", out, method="opencv-dis", progress=False, **kwargs)
    return out, _mtimes(out)


def _mtimes(out):
    """Modification times of a run folder's files, but the lock (every attempt takes it, refused or not)."""
    return {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != "estimate.lock"}


@pytest.mark.parametrize(
    "change, expected",
    [
        (dict(method="classical"), "method: opencv-dis -> classical"),
        (dict(preset="fast"), 'method.preset: "medium" -> "fast"'),
        (dict(fmt="npz"), 'format: "flo" -> "npz"'),
        (dict(max_size=32), "max_size: null -> 32"),
        (dict(viz=True), "viz: false -> true"),
        (dict(version="9.9"), 'motionflow: "0.1.0" -> "9.9"'),
    ],
)
def test_a_resume_with_another_run_is_refused(tmp_path, clip, monkeypatch, change, expected):
    from motionflow.errors import FormatError

    out, before = _tiny_run(tmp_path, clip)
    change = dict(change)
    if "version" in change:
        monkeypatch.setattr("motionflow.__version__", change.pop("version"))
    kwargs = dict(method="opencv-dis", progress=False)
    kwargs.update(change)
    with pytest.raises(FormatError) as exc:
        process_video(tmp_path / "frames", out, **kwargs)
    message = str(exc.value)
    assert expected in message and "--no-resume" in message and "\n" not in message
    assert _mtimes(out) == before  # nothing touched


def test_a_resume_from_another_source_or_without_a_manifest_is_refused(tmp_path, clip, capsys):
    from motionflow.errors import FormatError

    out, before = _tiny_run(tmp_path, clip)
    other = tmp_path / "other"
    _write_frames(other, clip)
    with pytest.raises(FormatError, match=r"source\.files_sha256: .*--no-resume"):
        process_video(other, out, method="opencv-dis", progress=False)
    (out / "estimate_manifest.json").write_text("[1, 2]")
    with pytest.raises(FormatError, match=r"estimate_manifest.json: expected an estimate run manifest"):
        process_video(tmp_path / "frames", out, method="opencv-dis", progress=False)
    (out / "estimate_manifest.json").unlink()
    # the CLI: one line, exit 1, and --no-resume starts over
    args = ["estimate", str(tmp_path / "frames"), "--out", str(out), "--method", "opencv-dis", "--no-progress"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "flow files without estimate_manifest.json" in err and "--no-resume" in err
    assert main([*args, "--no-resume"]) == 0
    assert "4 flows written, 0 already there" in capsys.readouterr().out
    assert main(args) == 0
    assert "0 flows written, 4 already there" in capsys.readouterr().out


def test_another_checkpoint_is_another_run():
    """Network weights enter the identity by SHA-256 of their tensors (so do iters and precision)."""
    import torch

    from motionflow.errors import FormatError
    from motionflow.inference.resume import check_manifest, describe, write_manifest
    from motionflow.registry import get_optical_flow_method

    torch.manual_seed(0)
    a = get_optical_flow_method("raft", weights="random", device="cpu")
    torch.manual_seed(1)
    b = get_optical_flow_method("raft", weights="random", device="cpu")
    assert describe(a)["weights_sha256"] != describe(b)["weights_sha256"]
    assert describe(a) == describe(a) and describe(a)["iters"] == 32
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        write_manifest(Path(d), {"method": describe(a)}, {})
        assert check_manifest(Path(d), {"method": describe(a)}, has_outputs=True)
        with pytest.raises(FormatError, match=r"method\.weights_sha256: \"[0-9a-f]+"):
            check_manifest(Path(d), {"method": describe(b)}, has_outputs=True)
        a.iters = 12
        with pytest.raises(FormatError, match=r"method\.iters: 32 -> 12"):
            check_manifest(Path(d), {"method": describe(a)}, has_outputs=True)


def test_ctrl_c_exits_130_with_one_line(tmp_path, clip, capsys, monkeypatch):
    from motionflow.inference import video

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    _write_frames(tmp_path / "frames", clip)
    monkeypatch.setattr(video, "process_video", interrupted)
    assert main(["estimate", str(tmp_path / "frames"), "--out", str(tmp_path / "out")]) == 130
    assert capsys.readouterr().err == "motionflow estimate: interrupted\n"


@pytest.mark.parametrize("flags, tty, shown", [
    ([], True, True), ([], False, False), (["--quiet"], True, False), (["--no-progress"], True, False),
    (["--progress"], False, True),
])
def test_progress_on_a_terminal_by_default(monkeypatch, flags, tty, shown):
    import argparse
    import sys

    from motionflow.cli.options import add_progress_flags, show_progress

    parser = argparse.ArgumentParser()
    add_progress_flags(parser)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty, raising=False)
    assert show_progress(parser.parse_args(flags)) is shown


def test_sceneflow_optimisation_shows_progress_on_a_terminal(tmp_path, capsys, monkeypatch):
    """nsfp's optimisation loop draws a tqdm bar when stderr is a terminal (nothing asked for it)."""
    import sys

    from motionflow.io import write_points

    pts = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    write_points(tmp_path / "a.npy", pts)
    write_points(tmp_path / "b.npy", pts + np.float32([0.05, 0, 0]))
    args = ["sceneflow", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--method", "nsfp", "--iters", "3",
            "--threads", "1", "--out", str(tmp_path / "f.npz")]
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert main(args) == 0
    assert "3/3" in capsys.readouterr().err  # (--quiet and a non-terminal: test_progress_on_a_terminal_by_default)


def test_a_second_estimate_on_the_same_out_is_refused_while_the_first_runs(tmp_path, clip, capsys):
    """Two runs on one --out would both pass the manifest check and interleave their flows: the second
    is refused (one line, exit 1) while the first holds the folder's lock, and runs once it is released."""
    from motionflow.io.lock import OutputLock

    _write_frames(tmp_path / "frames", clip)
    out = tmp_path / "out"
    args = ["estimate", str(tmp_path / "frames"), "--out", str(out), "--method", "opencv-dis", "--no-progress"]
    with OutputLock(out / "estimate.lock", "estimate run"):
        assert main(args) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "estimate.lock: another estimate run is writing to this output" in err[0]
        assert not list(out.glob("*.flo")) and not (out / "estimate_manifest.json").exists()
    assert main(args) == 0 and len(list(out.glob("*.flo"))) == 4
