"""A corpus of bad inputs through the command line, in-process (``main([...])``).

Each case builds damaged / empty / wrongly shaped files of a format the CLI reads, or passes a bad path
or option, and checks: exit code 1 (failure) or 2 (bad usage) as expected; exactly one line on stderr
(file-descriptor level, so native libraries' output counts too: FFmpeg, open3d, RPly), naming the file
or the option; no traceback; nothing written in place of good output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from motionflow.cli.main import main
from motionflow.datasets.synthetic import synthetic_clip
from motionflow.io import write_flow, write_points
from motionflow.io.video import VideoWriter

H, W = 32, 48
CLOUD = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)


@dataclass
class Case:
    """``build(tmp) -> argv`` writes the bad input under ``tmp``; stderr must name every one of ``names``;
    none of ``absent`` (paths under ``tmp``) may exist afterwards."""

    id: str
    build: Callable[[Path], list]
    code: int
    names: tuple
    absent: tuple = ("out",)
    shared: bool = False  # needs ../shared/data: build(tmp, roots) with the Sintel / KITTI roots


# ------------------------------------------------------------------------------------- builders
def _frames(tmp: Path, n: int = 3, folder: str = "frames", size=(H, W)) -> Path:
    import cv2

    d = tmp / folder
    d.mkdir(parents=True, exist_ok=True)
    clip = synthetic_clip(num_frames=max(n, 2), size=size, seed=1)
    for i, f in enumerate(clip.frames[:n]):
        cv2.imwrite(str(d / f"f_{i + 1:02d}.png"), f.transpose(1, 2, 0)[:, :, ::-1])
    return d


def _video(tmp: Path, n: int = 24, name: str = "v.mp4") -> Path:
    clip = synthetic_clip(num_frames=n, size=(96, 128), seed=1)
    path = tmp / name
    with VideoWriter(path, fps=10, backend="opencv") as w:  # mp4v: damage stays inside one frame
        for f in clip.frames:
            w.write(f.transpose(1, 2, 0))
    return path


def _damaged(path: Path, how: str) -> Path:
    data = path.read_bytes()
    if how == "truncated":  # cut at an odd length (a .bin of whole points would stay a valid file)
        data = data[: len(data) // 2 - 3]
    elif how == "empty":
        data = b""
    elif how == "text":
        data = b"this is not what the name says\n"
    elif how == "middle":  # seeded noise in the middle of the file (a damaged packet of a video)
        noise = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
        data = data[: len(data) // 2] + noise + data[len(data) // 2 + 3000:]
    path.write_bytes(data)
    return path


def _cloud(tmp: Path, name: str, how: str | None = None, array=None) -> Path:
    path = tmp / name
    if array is not None:
        if path.suffix == ".npz":
            np.savez(path, **array)
        else:
            np.save(path, array)
        return path
    write_points(path, CLOUD)
    return _damaged(path, how) if how else path


def _estimate(*inputs, extra=()) -> list:
    return ["estimate", *map(str, inputs), "--out", "OUT", "--method", "opencv-dis", *extra]


def _sceneflow(pc1, pc2=None, extra=()) -> list:
    return ["sceneflow", str(pc1), str(pc2 if pc2 is not None else pc1), "--out", "OUT/flow.npz", "--method", "zero",
            *extra]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _good(tmp: Path, name: str = "good.npy") -> Path:
    return _cloud(tmp, name)


def _torch_file(tmp: Path, name: str = "c.pth", key: str = "fc.weight") -> Path:
    import torch

    path = tmp / name
    torch.save({key: torch.zeros(2, 2)}, path)
    return path


def _eval_kitti(tmp: Path, roots: dict, write) -> list:
    pred = tmp / "pred"
    pred.mkdir()
    write(pred / "000000_10.png")
    return ["eval", "--dataset", "kitti2015", "--root", str(roots["kitti"]), "--predictions", str(pred),
            "--out", "OUT/report.json", "--no-progress"]


def _eval_sintel(tmp: Path, roots: dict, write) -> list:
    pred = tmp / "pred" / "alley_1"
    pred.mkdir(parents=True)
    for n in (1, 2, 3):
        write(pred / f"frame_{n:04d}.flo", n)
    return ["eval", "--dataset", "sintel", "--root", str(roots["sintel"]), "--pass", "final",
            "--predictions", str(tmp / "pred"), "--out", "OUT/report.json", "--no-progress"]


def _sintel_prediction(damage: str):
    """Frames 1 and 3 good (zero flow of the right size), frame 2 damaged."""

    def write(path: Path, n: int):
        write_flow(path, np.zeros((436, 1000 if n == 2 and damage == "size" else 1024, 2), np.float32))
        if n == 2 and damage != "size":
            _damaged(path, damage)

    return write


def _kitti_prediction(how: str):
    def write(path: Path):
        if how == "8bit":
            import cv2

            cv2.imwrite(str(path), np.zeros((375, 1242, 3), np.uint8))  # an 8-bit PNG, not a KITTI flow PNG
            return
        write_flow(path, np.zeros((375, 1242, 2), np.float32))
        _damaged(path, how)

    return write


NO_FLOW = ("out/f_01.flo", "out/f_02.flo", "out/viz")
NO_REPORT = ("out/report.json", "out/report.csv", "out/report.md")
NO_EVAL_FILES = (*NO_REPORT, "out/report.samples.jsonl")


def _eval_synthetic(kind: str, method: str, *extra: str) -> list:
    return ["eval", "--dataset", f"synthetic-{kind}", "--method", method, "--out", "OUT/report.json", "--max-samples", "1", "--no-progress",
            *extra]


# ---------------------------------------------------------------------------------------- corpus
CASES = [
    # estimate: paths, folders, image files
    Case("estimate-missing-input", lambda t: _estimate(t / "nope.mp4"), 1, ("nope.mp4",)),
    Case("estimate-empty-folder", lambda t: (t / "empty").mkdir() or _estimate(t / "empty"), 1, ("empty", "image files")),
    Case("estimate-one-frame-folder", lambda t: _estimate(_frames(t, n=1)), 1, ("frames", "expected at least 2 frames")),
    Case("estimate-one-image-file", lambda t: _estimate(_frames(t, n=1) / "f_01.png"), 1, ("f_01.png", "two image files")),
    # (a frame that cannot be used: the run goes on, and no flow file touches it)
    Case("estimate-text-file-named-png", lambda t: _estimate(_damaged(_frames(t, n=2) / "f_02.png", "text").parent), 1,
         ("f_02.png", "cannot decode"), absent=NO_FLOW),
    Case("estimate-truncated-png", lambda t: _estimate(_damaged(_frames(t, n=2) / "f_01.png", "truncated").parent), 1,
         ("f_01.png",), absent=NO_FLOW),
    Case("estimate-empty-png-file", lambda t: _estimate(_frames(t, n=2) / "f_01.png", _damaged(t / "frames" / "f_02.png", "empty")),
         1, ("f_02.png",), absent=NO_FLOW),
    Case("estimate-two-sizes", lambda t: _estimate(_frames(t, n=1, folder="a", size=(64, 96)) / "f_01.png",
                                                   _frames(t, n=2, folder="b") / "f_02.png"),
         1, ("f_01.png", "f_02.png", "48x32", "96x64"), absent=NO_FLOW),
    Case("estimate-image-and-folder-mix", lambda t: _estimate(_frames(t) / "f_01.png", t / "frames"), 1, ("INPUT", "mix")),
    # estimate: videos
    Case("estimate-empty-mp4", lambda t: _estimate(_damaged(_video(t, n=3), "empty")), 1, ("v.mp4",)),
    Case("estimate-text-named-mp4", lambda t: _estimate(_damaged(_video(t, n=3), "text")), 1, ("v.mp4",)),
    Case("estimate-truncated-mp4", lambda t: _estimate(_damaged(_video(t, n=3), "truncated")), 1, ("v.mp4",)),
    # estimate: options
    Case("estimate-max-size-0", lambda t: _estimate(_frames(t), extra=["--max-size", "0"]), 2, ("--max-size",)),
    Case("estimate-max-size-negative", lambda t: _estimate(_frames(t), extra=["--max-size", "-4"]), 2, ("--max-size",)),
    Case("estimate-max-size-text", lambda t: _estimate(_frames(t), extra=["--max-size", "big"]), 2, ("--max-size",)),
    Case("estimate-iters-0", lambda t: _estimate(_frames(t), extra=["--iters", "0"]), 2, ("--iters",)),
    Case("estimate-unknown-format", lambda t: _estimate(_frames(t), extra=["--format", "jpg"]), 2, ("--format",)),
    Case("estimate-unknown-method", lambda t: _estimate(_frames(t), extra=["--method", "nope"]), 2, ("nope",)),
    Case("estimate-preset-for-dis", lambda t: _estimate(_frames(t), extra=["--preset", "fast"]), 2, ("--preset",)),
    Case("estimate-unknown-option", lambda t: _estimate(_frames(t), extra=["--colour"]), 2, ("--colour",)),
    Case("estimate-no-out", lambda t: ["estimate", str(_frames(t))], 2, ("--out",)),
    # estimate: checkpoints
    Case("checkpoint-missing", lambda t: _estimate(_frames(t), extra=["--method", "raft", "--checkpoint", str(t / "no.pth")]),
         1, ("no.pth",)),
    Case("checkpoint-text-file", lambda t: _estimate(_frames(t), extra=["--method", "raft", "--checkpoint",
                                                                       str(_write(t / "c.pth", b"not a checkpoint"))]),
         1, ("c.pth", "not a torch file")),
    Case("checkpoint-truncated", lambda t: _estimate(_frames(t), extra=[
        "--method", "raft", "--checkpoint", str(_damaged(_torch_file(t), "truncated"))]), 1, ("c.pth",)),
    Case("checkpoint-other-network", lambda t: _estimate(_frames(t), extra=[
        "--method", "raft", "--checkpoint", str(_torch_file(t))]), 1, ("c.pth", "does not match RAFT")),
    # sceneflow: every point-cloud format
    *[Case(f"cloud-{how}-{suffix}", lambda t, s=suffix, h=how: _sceneflow(_cloud(t, f"bad.{s}", h), _good(t)), 1,
           (f"bad.{suffix}",))
      for suffix in ("npy", "npz", "pcd", "ply", "feather", "bin") for how in ("empty", "truncated", "text")],
    Case("cloud-missing", lambda t: _sceneflow(t / "none.bin", _good(t)), 1, ("none.bin",)),
    Case("cloud-unknown-suffix", lambda t: _sceneflow(_write(t / "c.xyz", b"1 2 3\n"), _good(t)), 1, ("c.xyz",)),
    Case("cloud-npy-two-columns", lambda t: _sceneflow(_cloud(t, "c.npy", array=np.zeros((10, 2), np.float32)), _good(t)),
         1, ("c.npy",)),
    Case("cloud-npy-1d", lambda t: _sceneflow(_cloud(t, "c.npy", array=np.zeros(30, np.float32)), _good(t)), 1, ("c.npy",)),
    Case("cloud-npy-empty-array", lambda t: _sceneflow(_cloud(t, "c.npy", array=np.zeros((0, 3), np.float32)), _good(t)),
         1, ("c.npy",)),
    Case("cloud-npy-object-array", lambda t: _sceneflow(_cloud(t, "c.npy", array=np.array([{"a": 1}], dtype=object)),
                                                       _good(t)), 1, ("c.npy",)),
    Case("cloud-npz-no-known-key", lambda t: _sceneflow(_cloud(t, "c.npz", array={"xyz": CLOUD}), _good(t)), 1,
         ("c.npz", "keys")),
    Case("cloud-npz-missing-key1", lambda t: _sceneflow(_cloud(t, "c.npz", array={"pc1": CLOUD}), _good(t),
                                                       extra=["--key1", "pos"]), 1, ("c.npz", "pos")),
    Case("cloud-feather-no-xyz", lambda t: _sceneflow(_feather_without_xyz(t), _good(t)), 1, ("c.feather",)),
    Case("cloud-bin-not-16-bytes", lambda t: _sceneflow(_write(t / "c.bin", b"\0" * 20), _good(t)), 1,
         ("c.bin", "16 bytes")),
    # sceneflow: options
    Case("sceneflow-unknown-method", lambda t: _sceneflow(_good(t), extra=["--method", "magic"]), 2, ("magic", "--method")),
    Case("sceneflow-max-points-0", lambda t: _sceneflow(_good(t), extra=["--max-points", "0"]), 2, ("--max-points",)),
    Case("sceneflow-iters-0", lambda t: _sceneflow(_good(t), extra=["--method", "nsfp", "--iters", "0"]), 2, ("--iters",)),
    Case("sceneflow-crop-two-values", lambda t: _sceneflow(_good(t), extra=["--crop", "1", "2"]), 1, ("--crop",)),
    Case("sceneflow-method-option-no-equals", lambda t: _sceneflow(_good(t), extra=["--method-option", "lr"]), 1,
         ("--method-option",)),
    Case("sceneflow-fill-rigid-without-ego", lambda t: _sceneflow(_good(t), extra=["--fill", "rigid"]), 1, ("--fill rigid",)),
    Case("sceneflow-ground-unknown", lambda t: _sceneflow(_good(t), extra=["--ground", "plane"]), 2, ("--ground",)),
    Case("sceneflow-out-is-a-folder", lambda t: (t / "d").mkdir() or ["sceneflow", str(_good(t)), str(_good(t)),
                                                                     "--out", str(t / "d"), "--method", "zero"],
         1, ("d",), absent=()),
    # eval --predictions: .flo (Sintel) and KITTI .png files
    # (eval keeps its records file for a resume: no report may be written)
    *[Case(f"eval-flo-{how}", lambda t, r, h=how: _eval_sintel(t, r, _sintel_prediction(h)), 1, ("frame_0002.flo",),
           absent=NO_REPORT, shared=True)
      for how in ("empty", "truncated", "text", "size")],
    *[Case(f"eval-kitti-png-{how}", lambda t, r, h=how: _eval_kitti(t, r, _kitti_prediction(h)), 1, ("000000_10.png",),
           absent=NO_REPORT, shared=True)
      for how in ("empty", "truncated", "text", "8bit")],
    Case("eval-missing-prediction", lambda t, r: _eval_kitti(t, r, lambda p: None), 1, ("000000_10.png",), absent=NO_REPORT,
         shared=True),
    # eval / sceneflow / estimate: options a method or loader does not take or refuses, devices, counts
    # (a failed run leaves no records file that would refuse the corrected rerun)
    Case("eval-method-option-unknown", lambda t: _eval_synthetic("flow", "opencv-dis", "--method-option", "bogus=1"), 2,
         ("'opencv-dis'", "unknown option 'bogus'", "valid options: preset"), absent=NO_EVAL_FILES),
    Case("eval-iters-for-dis", lambda t: _eval_synthetic("flow", "opencv-dis", "--iters", "3"), 2,
         ("unknown option 'iters'",), absent=NO_EVAL_FILES),
    Case("eval-scene-method-option-unknown", lambda t: _eval_synthetic("lidar", "nsfp", "--method-option", "bogus=1"), 1,
         ("'nsfp'", "bogus"), absent=NO_EVAL_FILES),
    Case("eval-method-option-not-a-number", lambda t: _eval_synthetic("lidar", "nsfp", "--method-option", "max_points=abc"),
         1, ("'nsfp'", "max_points", "abc"), absent=NO_EVAL_FILES),
    Case("eval-dataset-option-not-a-number", lambda t: _eval_synthetic("flow", "opencv-dis", "--option", "frames=abc"), 1,
         ("dataset 'synthetic-flow'", "frames", "abc"), absent=NO_EVAL_FILES),
    Case("eval-dataset-option-wrong-type", lambda t: _eval_synthetic("flow", "opencv-dis", "--option", "size=5"), 1,
         ("dataset 'synthetic-flow'", "size"), absent=NO_EVAL_FILES),
    Case("eval-iters-negative", lambda t: _eval_synthetic("flow", "raft", "--iters", "-1"), 2, ("--iters",)),
    Case("eval-max-samples-0", lambda t: _eval_synthetic("flow", "opencv-dis", "--max-samples", "0"), 2, ("--max-samples",)),
    Case("eval-device-typo", lambda t: _eval_synthetic("flow", "opencv-dis", "--device", "gpu0"), 2, ("--device", "gpu0")),
    Case("sceneflow-method-option-unknown", lambda t: _sceneflow(_good(t), extra=["--method", "nn", "--method-option",
                                                                                 "bogus=1"]), 1, ("'nn'", "bogus")),
    Case("sceneflow-device-typo", lambda t: _sceneflow(_good(t), extra=["--device", "gpu"]), 2, ("--device", "gpu")),
    Case("estimate-device-typo", lambda t: _estimate(_frames(t), extra=["--device", "cdua"]), 2, ("--device", "cdua")),
    *([Case(f"{cmd}-device-cuda-without-one", lambda t, c=cmd: (
        _eval_synthetic("flow", "opencv-dis", "--device", "cuda") if c == "eval" else
        _estimate(_frames(t), extra=["--device", "cuda"])), 2, ("--device", "no CUDA device"))
       for cmd in ("eval", "estimate")] if not torch.cuda.is_available() else []),
]


def _feather_without_xyz(tmp: Path) -> Path:
    from motionflow.io import write_feather

    path = tmp / "c.feather"
    write_feather(path, {"a": np.zeros(4, np.float32)})
    return path


def _resolve(argv: list, tmp: Path) -> list:
    return [a.replace("OUT", str(tmp / "out")) if isinstance(a, str) and a.startswith("OUT") else a for a in argv]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_clean_line(case, tmp_path, capfd, request):
    if case.shared:  # the fixtures fail under CI=true when ../shared is absent
        roots = {name: request.getfixturevalue(f"{name}_root") for name in ("kitti", "sintel")}
        argv = _resolve(case.build(tmp_path, roots), tmp_path)
    else:
        argv = _resolve(case.build(tmp_path), tmp_path)
    capfd.readouterr()
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's bad usage
        rc = exc.code
    out, err = capfd.readouterr()
    lines = err.splitlines()
    assert rc == case.code, (rc, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    # argparse reports an unknown option at the root ("motionflow: error: unrecognized arguments")
    assert lines[0].startswith((f"motionflow {argv[0]}: error: ", "motionflow: error: ")), lines[0]
    for name in case.names:
        assert name in lines[0], (name, lines[0])
    for rel in case.absent:
        assert not (tmp_path / rel).exists(), f"{rel} was written"


def test_a_video_damaged_mid_stream_keeps_the_good_flows(tmp_path, capfd):
    """The damaged frames are named (by index), FFmpeg says nothing, every other pair has its flow."""
    video = _damaged(_video(tmp_path), "middle")
    assert main(["estimate", str(video), "--out", str(tmp_path / "out"), "--method", "opencv-dis"]) == 1
    err = capfd.readouterr().err
    assert err.startswith(f"motionflow estimate: error: {video}: ") and "skipped: index" in err and "Traceback" not in err
    report = json.loads((tmp_path / "out" / "estimate_report.json").read_text())
    bad = report["unreadable_frames"]
    assert 1 <= len(bad) <= 8 and err.count("\n") == 1
    assert all(report["unreadable_reasons"][str(i)] == f"frame {i}: the video decoder returned no image" for i in bad)
    flows = sorted(p.name for p in (tmp_path / "out").glob("frame_*.flo"))
    touching = {i - 1 for i in bad} | set(bad)
    assert flows == [f"frame_{i:06d}.flo" for i in range(23) if i not in touching]


@pytest.mark.parametrize("how", ["empty", "truncated", "text"])
def test_damaged_pfm_is_a_format_error_naming_the_file(tmp_path, how):
    """No command reads .pfm (FlyingThings ground truth): the reader itself is checked."""
    from motionflow.errors import FormatError
    from motionflow.io import read_flow, write_pfm_flow

    path = tmp_path / "f.pfm"
    write_pfm_flow(path, np.zeros((H, W, 2), np.float32))
    _damaged(path, how)
    with pytest.raises(FormatError, match=r"f\.pfm: .*expected"):
        read_flow(path)


def test_corpus_size():
    """The figure the issue asks for: how many bad inputs the corpus tries (each must give a clean error)."""
    # + the damaged video and 3 .pfm files below the table; 2 CUDA-device cases where there is no CUDA
    assert len(CASES) == 82 + 2 * (not torch.cuda.is_available())
    assert {c.id.split("-")[0] for c in CASES} >= {"estimate", "checkpoint", "cloud", "sceneflow", "eval"}
