"""Benchmark of the training-free methods on every real sample in ../shared/data, plus synthetic clips.

    python benchmarks/classical.py                 # all samples, presets fast/default/accurate, 3 repeats
    python benchmarks/classical.py --repeats 1 --methods classical opencv-dis
    python benchmarks/classical.py --json out.json
    taskset -c 0 python benchmarks/classical.py --reynolds   # ReynoldsFlow speed only (one core)

Methods: ``classical`` presets (``classical:fast``, ``classical``, ``classical:accurate``),
``opencv-dis`` (MEDIUM preset) and ``opencv-farneback``, each called once per sample on all of its
frames (Sintel alley_1: 4 frames -> 3 flows, so multi-frame methods use the neighbours; KITTI 000000
and the FlyingChairs pairs: 2 frames).

Reported per sample and method: EPE (pixel-pooled over the sample's valid GT pixels), Fl-all (percent
of valid pixels with EPE > 3 px and > 5 % of |gt|, KITTI devkit definition), CPU seconds
(``time.process_time`` of the method call, minimum over ``--repeats``) and wall seconds, and the
ratios EPE / EPE(opencv-dis) and CPU / CPU(opencv-dis) measured in the same run. Torch and OpenCV are
limited to ``--threads`` threads (default 1): on a shared, loaded machine multi-threaded CPU time
mostly measures spinning, and one thread compares the methods' work fairly.

The goal line checks, for ``classical`` (default preset) on every sample: EPE below opencv-dis, KITTI
Fl-all below opencv-dis, CPU time at most 10x opencv-dis.

``--reynolds``: frames per second of ReynoldsFlow (``v_o`` + ``v_r`` and the ReynoldsFlow+ image,
:meth:`ReynoldsFlow.pair` + :func:`reynolds_rgb` on ``(H, W, 3)`` uint8 frames) at 640x512 (Anti-UAV
infrared) and 1920x1080, on ``--threads`` threads (default 1), as a ratio to ``opencv-farneback`` (grey
conversion + OpenCV's Farneback on the same pair) measured in the same run; frames are Sintel alley_1
1 -> 2 resized (a synthetic texture without ../shared/data). Frames/s from CPU time (``process_time``, the
median of ``--repeats`` x 10 calls; less disturbed by other processes than wall time, which is shown too).
Goal: >= 30 frames/s at 640x512 on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

DEFAULT_METHODS = ["classical:fast", "classical", "classical:accurate", "opencv-dis", "opencv-farneback"]


def _data_root() -> Path:
    env = os.environ.get("MOTIONFLOW_SAMPLE_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


def load_samples(root: Path) -> dict:
    """name -> (frames (T, 3, H, W) uint8, flows (P, 2, H, W), valid (P, H, W))."""
    from motionflow.io import read_flow, read_image, read_kitti_png

    def stack(images):
        return np.stack([im.transpose(2, 0, 1) for im in images])

    out = {}
    sintel = root / "sintel_alley_1"
    for p in ("clean", "final"):
        frames = stack([read_image(sintel / p / f"frame_{i:04d}.png") for i in range(1, 5)])
        gts = [read_flow(sintel / "flow" / f"frame_{i:04d}.flo") for i in range(1, 4)]
        out[f"sintel-alley_1-{p}"] = (frames, np.stack([g.transpose(2, 0, 1) for g, _ in gts]), np.stack([v for _, v in gts]))
    kitti = root / "kitti2015_flow_000000"
    g, v = read_kitti_png(kitti / "flow_gt.png")
    out["kitti-000000"] = (
        stack([read_image(kitti / "000000_10.png"), read_image(kitti / "000000_11.png")]),
        g.transpose(2, 0, 1)[None],
        v[None],
    )
    chairs = root / "flyingchairs_flownet2"
    for s in ("0000001", "0000006"):
        g, v = read_flow(chairs / f"{s}-gt.flo")
        out[f"chairs-{s}"] = (
            stack([read_image(chairs / f"{s}-img0.ppm"), read_image(chairs / f"{s}-img1.ppm")]),
            g.transpose(2, 0, 1)[None],
            v[None],
        )
    return out


def synthetic_samples() -> dict:
    """8 synthetic 4-frame clips (128x160): seeds 0-3, slow (max_motion 4) and fast (12) motion."""
    from motionflow.datasets.synthetic import synthetic_clip

    out = {}
    for seed in range(4):
        for motion in (4.0, 12.0):
            c = synthetic_clip(num_frames=4, size=(128, 160), seed=seed, max_motion=motion)
            out[f"synthetic-s{seed}-m{int(motion)}"] = (c.frames, c.flow, c.valid)
    return out


def build(name: str):
    from motionflow.registry import get_optical_flow_method

    if ":" in name:
        method, preset = name.split(":")
        return get_optical_flow_method(method, preset=preset)
    return get_optical_flow_method(name)


def score(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> tuple[float, float]:
    """Pixel-pooled EPE and Fl-all (percent) over all flows of a sample."""
    from motionflow.eval.optical import endpoint_error, flow_outliers

    epe = endpoint_error(pred, gt)[valid]
    mag = np.sqrt((gt**2).sum(1))[valid]
    return float(epe.mean()), float(100.0 * flow_outliers(epe, mag).mean())


def run_one(method, frames: np.ndarray, repeats: int):
    x = torch.from_numpy(frames).float()[None]
    cpu, wall, pred = [], [], None
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        pred = method(x)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return pred.flow[0].numpy(), min(cpu), min(wall)


def reynolds_pair(root: Path, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Two consecutive RGB uint8 frames ``(H, W, 3)`` at ``size = (W, H)``."""
    import cv2

    sintel = root / "sintel_alley_1" / "clean"
    if sintel.is_dir():
        from motionflow.io import read_image

        return tuple(cv2.resize(read_image(sintel / f"frame_{i:04d}.png"), size, interpolation=cv2.INTER_AREA) for i in (1, 2))
    rng = np.random.default_rng(0)
    tex = cv2.GaussianBlur(rng.random((size[1] + 8, size[0] + 8)).astype(np.float32), (0, 0), 3.0)
    tex = np.repeat(((tex - tex.min()) / np.ptp(tex) * 255).astype(np.uint8)[..., None], 3, -1)
    return tex[4 : 4 + size[1], 4 : 4 + size[0]], tex[3 : 3 + size[1], 2 : 2 + size[0]]


def _per_call(fn, repeats: int, calls: int = 10) -> tuple[float, float]:
    """(CPU seconds, wall seconds) per call: medians over ``repeats`` blocks of ``calls`` calls."""
    fn()  # warm-up (DCT plans, OpenCV buffers)
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(calls):
            fn()
        cpu.append((time.process_time() - c0) / calls)
        wall.append((time.perf_counter() - w0) / calls)
    return float(np.median(cpu)), float(np.median(wall))


def reynolds_speed(root: Path, repeats: int, threads: int) -> list[dict]:
    """ReynoldsFlow frames/s at 640x512 and 1920x1080 against opencv-farneback in the same run."""
    import cv2

    from motionflow.classical.reynolds import ReynoldsFlow, reynolds_rgb
    from motionflow.registry import get_optical_flow_method

    reynolds, farneback = ReynoldsFlow(), get_optical_flow_method("opencv-farneback")
    rows = []
    print(f"\n== ReynoldsFlow speed ({threads} thread(s); base {type(reynolds.base).__name__} "
          f"preset {getattr(reynolds.base, 'preset', '-')}) ==")
    print(f"{'size':>10s} {'reynolds fps':>13s} {'farneback fps':>14s} {'ratio':>7s} {'(wall fps: ours / fb)':>22s}")
    for size in ((640, 512), (1920, 1080)):
        a, b = reynolds_pair(root, size)
        ours = _per_call(lambda: reynolds_rgb(reynolds.pair(a, b), a), repeats, 10 if size[0] < 1000 else 3)

        def fb():
            ga, gb = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
            return farneback.flow_grey(ga, gb)

        ref = _per_call(fb, repeats, 3 if size[0] < 1000 else 1)
        row = dict(size=f"{size[0]}x{size[1]}", reynolds_fps=1 / ours[0], farneback_fps=1 / ref[0],
                   ratio=ref[0] / ours[0], reynolds_wall_fps=1 / ours[1], farneback_wall_fps=1 / ref[1])
        rows.append(row)
        print(f"{row['size']:>10s} {row['reynolds_fps']:13.1f} {row['farneback_fps']:14.1f} {row['ratio']:6.1f}x "
              f"{row['reynolds_wall_fps']:12.1f} / {row['farneback_wall_fps']:.1f}")
        sys.stdout.flush()
    print(f"goal (>= 30 frames/s at 640x512 on one core): {rows[0]['reynolds_fps'] >= 30} "
          f"({rows[0]['reynolds_fps']:.1f} frames/s)")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=DEFAULT_METHODS)
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats (minimum reported)")
    ap.add_argument("--threads", type=int, default=1, help="torch / OpenCV threads")
    ap.add_argument("--no-synthetic", action="store_true")
    ap.add_argument("--json", default=None, help="also write the rows as JSON")
    ap.add_argument("--reynolds", action="store_true", help="only the ReynoldsFlow speed rows")
    args = ap.parse_args(argv)

    import cv2

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    root = _data_root()
    if args.reynolds:
        rows = reynolds_speed(root, args.repeats, args.threads)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
        return 0
    if not root.is_dir():
        print(f"benchmarks/classical.py: sample data not found at {root} (set MOTIONFLOW_SAMPLE_DATA)", file=sys.stderr)
        return 1
    sets = {"real": load_samples(root)}
    if not args.no_synthetic:
        sets["synthetic"] = synthetic_samples()
    methods = {name: build(name) for name in args.methods}
    rows = []
    for kind, samples in sets.items():
        reps = args.repeats if kind == "real" else 1
        print(f"\n== {kind} samples ({args.threads} thread(s), CPU = min of {reps} run(s)) ==")
        print(f"{'sample':24s} {'method':20s} {'EPE':>8s} {'Fl-all%':>8s} {'cpu s':>8s} {'wall s':>8s} {'EPE/DIS':>8s} {'cpu/DIS':>8s}")
        for sname, (frames, gt, valid) in samples.items():
            res = {}
            for mname, method in methods.items():
                pred, cpu, wall = run_one(method, frames, args.repeats if kind == "real" else 1)
                epe, fl = score(pred, gt, valid)
                res[mname] = dict(sample=sname, set=kind, method=mname, epe=epe, fl_all=fl, cpu_s=cpu, wall_s=wall)
            ref = res.get("opencv-dis")
            for mname, r in res.items():
                r["epe_ratio"] = r["epe"] / ref["epe"] if ref else None
                r["cpu_ratio"] = r["cpu_s"] / ref["cpu_s"] if ref and ref["cpu_s"] > 0 else None
                ratios = f"{r['epe_ratio']:8.3f} {r['cpu_ratio']:8.1f}" if ref else ""
                print(f"{sname:24s} {mname:20s} {r['epe']:8.3f} {r['fl_all']:8.2f} {r['cpu_s']:8.3f} {r['wall_s']:8.3f} {ratios}")
                rows.append(r)
            sys.stdout.flush()
    real = [r for r in rows if r["set"] == "real"]
    if "classical" in methods and "opencv-dis" in methods:
        ours = {r["sample"]: r for r in real if r["method"] == "classical"}
        dis = {r["sample"]: r for r in real if r["method"] == "opencv-dis"}
        epe_ok = all(ours[s]["epe"] < dis[s]["epe"] for s in ours)
        fl_ok = all(ours[s]["fl_all"] < dis[s]["fl_all"] for s in ours if s.startswith("kitti"))
        total = sum(r["cpu_s"] for r in ours.values()) / sum(r["cpu_s"] for r in dis.values())
        worst = max(r["cpu_ratio"] for r in ours.values())
        print(
            f"\ngoal (classical default vs opencv-dis on the real samples): EPE lower on all: {epe_ok}; "
            f"KITTI Fl-all lower: {fl_ok}; CPU ratio total {total:.1f}x, worst sample {worst:.1f}x (limit 10x)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
