"""``motionflow demo --out DIR``: both halves of motionflow on generated data, with pictures and metrics.

The demo makes a synthetic clip (textured layers with exact flow) and a synthetic lidar pair (boxes on a
ground plane, some moving, plus ego motion), runs the default optical-flow and scene-flow methods (the
best that need no weights) and a simple baseline for each, and writes into DIR:

* ``frames/frame_XXXX.png`` -- the clip;
* ``flow/<method>_XXXX.png`` and ``flow/gt_XXXX.png`` -- flow colour images (one shared scale);
* ``flow/<method>_error_XXXX.png`` -- KITTI-style error maps;
* ``flow/color_wheel.png`` -- the colour legend;
* ``sceneflow/<method>.png`` and ``sceneflow/gt.png`` -- bird's-eye views coloured by object motion
  (scene flow minus ego motion; grey = static, hue = direction, saturation = speed up to 1.5 m);
* ``sceneflow/accumulated.png`` -- long-term correspondence: a synthetic 5-sweep sequence accumulated
  into the last sweep's frame by chaining estimated per-pair flows (colour = sweep index);
* ``metrics.json`` -- every number printed in the table.

The scene-flow methods are given the pair's ego motion (as an AV dataset's poses would give it); the
baseline ``zero`` then means "a static world seen from the moving ego vehicle".
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

# the package's defaults (the best methods that need no weights) and a simple baseline for each
OPTICAL_DEFAULT, OPTICAL_BASELINE = "classical", "opencv-dis"
SCENE_DEFAULT, SCENE_BASELINE = "rigid", "zero"


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo",
        help="run both halves on generated data; write pictures and metrics",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (created)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated data (default 0)")
    parser.add_argument("--frames", type=int, default=4, help="frames in the clip (default 4)")
    parser.add_argument("--size", default="192x256", help="clip size HxW (default 192x256)")
    parser.add_argument("--optical-method", default=OPTICAL_DEFAULT, help=f"optical-flow method (default {OPTICAL_DEFAULT})")
    parser.add_argument("--scene-method", default=SCENE_DEFAULT, help=f"scene-flow method (default {SCENE_DEFAULT})")
    return parser


def _parse_size(text: str) -> tuple[int, int]:
    from motionflow.errors import ShapeError

    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ShapeError(f"--size: expected HxW such as 192x256, found {text!r}") from None
    return h, w


def _optical(out: Path, args, report: dict) -> list[tuple]:
    import torch

    from motionflow.datasets.synthetic import synthetic_clip
    from motionflow.eval.accumulator import Accumulator
    from motionflow.eval.optical import optical_flow_metrics, optical_flow_partial
    from motionflow.io import write_image
    from motionflow.registry import get_optical_flow_method
    from motionflow.viz import color_wheel_legend, error_map, flow_to_color

    clip = synthetic_clip(num_frames=args.frames, size=_parse_size(args.size), seed=args.seed)
    for t, frame in enumerate(clip.frames):
        write_image(out / "frames" / f"frame_{t:04d}.png", frame.transpose(1, 2, 0))
    scale = float(np.linalg.norm(clip.flow, axis=1).max())
    for t, gt in enumerate(clip.flow):
        write_image(out / "flow" / f"gt_{t:04d}.png", flow_to_color(gt, max_flow=scale))
    write_image(out / "flow" / "color_wheel.png", color_wheel_legend(128))

    best = args.optical_method
    names = [best] + ([OPTICAL_BASELINE] if OPTICAL_BASELINE != best else [])
    rows = []
    frames = torch.from_numpy(clip.frames).float()[None]
    for name in names:
        method = get_optical_flow_method(name)
        start = time.perf_counter()
        pred = method(frames).flow[0].detach().cpu().numpy()
        seconds = time.perf_counter() - start
        acc = Accumulator.from_partial(optical_flow_partial(pred, clip.flow, clip.valid, clip.occluded))
        metrics = optical_flow_metrics(acc)
        for t, flow in enumerate(pred):
            write_image(out / "flow" / f"{name}_{t:04d}.png", flow_to_color(flow, max_flow=scale))
            write_image(out / "flow" / f"{name}_error_{t:04d}.png", error_map(flow, clip.flow[t], clip.valid[t]))
        summary = {k: metrics[k]["value"] for k in ("epe", "px1", "px3", "fl_all", "epe_noc", "epe_occ") if k in metrics}
        report["optical_flow"][name] = {"metrics": metrics, "seconds": seconds}
        rows.append(("optical", name, summary.get("epe"), summary.get("px1"), seconds))
    report["optical_flow"]["_data"] = {"generator": "synthetic_clip", "frames": args.frames, "size": args.size, "seed": args.seed}
    return rows


def _scene(out: Path, args, report: dict) -> list[tuple]:
    from motionflow.datasets.synthetic import synthetic_lidar_pair
    from motionflow.eval.scene import scene_flow_metrics_per_sample
    from motionflow.io import write_image
    from motionflow.registry import get_scene_flow_method
    from motionflow.viz import scene_flow_bev

    from motionflow.ops.geometry import apply_transform, ego_flow, invert_transform

    pair = synthetic_lidar_pair(seed=args.seed)
    # pictures show object motion: the flow minus the ego motion, over pc2 moved into pc1's frame
    ego = ego_flow(pair.pc1, pair.ego_motion).numpy()
    backdrop = apply_transform(pair.pc2, invert_transform(pair.ego_motion)).numpy()

    def picture(name, flow):
        image = scene_flow_bev(pair.pc1, flow - ego, background=backdrop, extent=30.0, max_flow=1.5)
        write_image(out / "sceneflow" / f"{name}.png", image)

    picture("gt", pair.flow)
    best = args.scene_method
    names = [best] + ([SCENE_BASELINE] if SCENE_BASELINE != best else [])
    rows = []
    for name in names:
        # the ego motion is known (as from an AV dataset's poses); the baseline is then "static world"
        options = {"compensate_ego": True} if name == SCENE_BASELINE else {}
        result = get_scene_flow_method(name, **options)(pair.pc1, pair.pc2, ego_motion=pair.ego_motion)
        metrics = scene_flow_metrics_per_sample(result.flow, pair.flow)
        picture(name, result.flow)
        report["scene_flow"][name] = {
            "metrics": metrics,
            "seconds": result.seconds,
            "iterations": result.iterations,
            "converged": result.converged,
        }
        rows.append(("scene", name, metrics["epe3d"], metrics["acc3d_strict"], result.seconds))
    report["scene_flow"]["_data"] = {"generator": "synthetic_lidar_pair", "seed": args.seed, "points": len(pair.pc1)}
    return rows


# one colour per sweep of the accumulation picture (oldest first)
SWEEP_COLOURS = ((66, 133, 244), (52, 168, 83), (251, 188, 5), (234, 67, 53), (255, 255, 255))


def _accumulate(out: Path, args, report: dict) -> list[tuple]:
    """Chain per-pair flows over a synthetic sequence and compare with chaining the exact flows."""
    from motionflow.datasets.synthetic import synthetic_lidar_sequence
    from motionflow.io import write_image
    from motionflow.sceneflow import accumulate

    seq = synthetic_lidar_sequence(num_sweeps=len(SWEEP_COLOURS), seed=args.seed)
    start = time.perf_counter()
    points, sweep = accumulate(seq["clouds"], method="icp")
    seconds = time.perf_counter() - start
    exact, _ = accumulate(seq["clouds"], flows=seq["flows"])
    static = np.concatenate([ground for ground in seq["ground"]])
    error = np.linalg.norm(points - exact, axis=1)
    extent, resolution = 30.0, 0.1
    size = int(2 * extent / resolution)
    image = np.zeros((size, size, 3), dtype=np.uint8)
    rows = ((extent - points[:, 0]) / resolution).astype(int)
    cols = ((extent - points[:, 1]) / resolution).astype(int)
    inside = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
    for t, colour in enumerate(SWEEP_COLOURS):
        sel = inside & (sweep == t)
        image[rows[sel], cols[sel]] = colour
    write_image(out / "sceneflow" / "accumulated.png", image)
    metrics = {
        "sweeps": len(seq["clouds"]),
        "points": int(len(points)),
        "median_error_static_m": float(np.median(error[static])),
        "median_error_all_m": float(np.median(error)),
    }
    report["accumulation"] = {"method": "icp", "metrics": metrics, "seconds": seconds}
    return [("accum", "icp (chained)", metrics["median_error_all_m"], float(np.mean(error < 0.05)), seconds)]


def run(args: argparse.Namespace) -> int:
    from motionflow.io.atomic import atomic_write_bytes

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"optical_flow": {}, "scene_flow": {}}
    rows = _optical(out, args, report) + _scene(out, args, report) + _accumulate(out, args, report)
    atomic_write_bytes(out / "metrics.json", json.dumps(report, indent=2, default=float).encode())

    print(f"{'half':8s} {'method':18s} {'EPE':>8s} {'acc':>8s} {'seconds':>8s}")
    for half, name, epe, acc, seconds in rows:
        print(f"{half:8s} {name:18s} {epe:8.3f} {acc:8.3f} {seconds:8.2f}")
    print("(optical: EPE px, acc = px1; scene: EPE3D m, acc = Acc3D strict; "
          "accum: median error m of 5 sweeps carried to the last, acc = share < 5 cm)")
    print(f"pictures and metrics.json written to {out}")
    return 0
