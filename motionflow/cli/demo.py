"""``motionflow demo --out DIR``: both halves of motionflow on generated data, with pictures, metrics and a page.

The demo makes a synthetic clip (textured layers with exact flow) and a synthetic lidar pair (boxes on a
ground plane, some moving, plus ego motion), runs the default optical-flow and scene-flow methods (the
best that need no weights) and a simple baseline for each, and writes into DIR:

* ``index.html`` -- the page to open: metrics tables (with units), the pictures with captions;
* ``frames/frame_XXXX.png`` -- the clip;
* ``flow/<method>_XXXX.png`` and ``flow/gt_XXXX.png`` -- flow colour images, one normalisation for all of
  them (written on each, beside the colour-wheel legend);
* ``flow/<method>_epe_XXXX.png`` -- end-point error maps with a colour bar (one scale for every method);
* ``flow/<method>_kitti_XXXX.png`` -- the KITTI devkit's error image with its colour legend;
* ``flow/color_wheel.png`` -- the colour legend;
* ``sceneflow/<method>.png`` -- bird's-eye views of estimate, ground truth and error, coloured by motion
  relative to the static world (scene flow minus ego motion), cluster arrows for the rigid method;
  ``sceneflow/<method>_side.png`` the side view (these need matplotlib: ``pip install 'motionflow[viz]'``;
  without it they are skipped with a notice);
* ``sceneflow/accumulated.png`` -- long-term correspondence: a synthetic 5-sweep sequence accumulated
  into the last sweep's frame by chaining estimated per-pair flows (colour = sweep index);
* ``metrics.json`` -- every number printed in the table, each with its unit (NaN is written as null).

The scene-flow methods are given the pair's ego motion (as an AV dataset's poses would give it); the
baseline ``zero`` then means "a static world seen from the moving ego vehicle".
"""

from __future__ import annotations

import argparse
import json
import sys
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


class _Page:
    """What the demo found, collected for metrics.json, the printed table and index.html."""

    def __init__(self, out: Path):
        self.out = out
        self.report: dict = {"optical_flow": {}, "scene_flow": {}}
        self.rows: list[tuple] = []
        self.galleries: dict[str, list] = {}
        self.notes: list[str] = []

    def picture(self, gallery: str, rel: str, image, caption: str, show: bool = True) -> None:
        from motionflow.io import write_image

        write_image(self.out / rel, image)
        if show:
            self.galleries.setdefault(gallery, []).append((rel, caption))


def _with_units(metrics: dict, kind: str) -> dict:
    """``{name: {"value", "unit", ...}}`` from a metrics dict of entries or plain numbers."""
    from motionflow.eval.units import metric_unit

    return {k: {**(v if isinstance(v, dict) else {"value": v}), "unit": metric_unit(k, kind)} for k, v in metrics.items()}


def _optical(page: _Page, args) -> None:
    import torch

    from motionflow.datasets.synthetic import synthetic_clip
    from motionflow.eval.accumulator import Accumulator
    from motionflow.eval.optical import optical_flow_metrics, optical_flow_partial
    from motionflow.registry import get_optical_flow_method
    from motionflow.viz import color_wheel_legend, epe_picture, flow_picture, flow_scale, kitti_error_picture

    clip = synthetic_clip(num_frames=args.frames, size=_parse_size(args.size), seed=args.seed)
    for t, frame in enumerate(clip.frames):
        page.picture("Optical flow", f"frames/frame_{t:04d}.png", frame.transpose(1, 2, 0),
                     f"frame {t} of the generated clip", show=t == 0)
    scale = flow_scale(clip.flow, percentile=100)  # one normalisation: nothing in the ground truth saturates
    for t, gt in enumerate(clip.flow):
        page.picture("Optical flow", f"flow/gt_{t:04d}.png", flow_picture(gt, max_flow=scale),
                     f"ground-truth flow {t}->{t + 1}", show=t == 0)
    page.picture("Optical flow", "flow/color_wheel.png", color_wheel_legend(128),
                 "Middlebury colour wheel (Baker et al.): hue = direction, saturation = magnitude", show=False)
    best = args.optical_method
    names = [best] + ([OPTICAL_BASELINE] if OPTICAL_BASELINE != best else [])
    frames = torch.from_numpy(clip.frames).float()[None]
    preds = {}
    for name in names:
        method = get_optical_flow_method(name)
        start = time.perf_counter()
        preds[name] = method(frames).flow[0].detach().cpu().numpy()
        seconds = time.perf_counter() - start
        acc = Accumulator.from_partial(optical_flow_partial(preds[name], clip.flow, clip.valid, clip.occluded))
        metrics = _with_units(optical_flow_metrics(acc), "optical")
        page.report["optical_flow"][name] = {"metrics": metrics, "seconds": seconds}
        page.rows.append(("optical", name, metrics["epe"]["value"], metrics["px1"]["value"], seconds))
    # one error scale for every method: the baseline's 99th percentile
    errors = np.concatenate([np.linalg.norm(p - clip.flow, axis=1).ravel() for p in preds.values()])
    max_epe = max(float(np.percentile(errors, 99)), 0.1)
    for name, pred in preds.items():
        epe = page.report["optical_flow"][name]["metrics"]["epe"]["value"]
        for t, flow in enumerate(pred):
            first = t == 0
            page.picture("Optical flow", f"flow/{name}_{t:04d}.png", flow_picture(flow, max_flow=scale),
                         f"{name} flow {t}->{t + 1} (clip EPE {epe:.3f} px)", show=first)
            page.picture("Optical flow", f"flow/{name}_epe_{t:04d}.png",
                         epe_picture(flow, clip.flow[t], clip.valid[t], max_epe=max_epe),
                         f"{name}: end-point error map {t}->{t + 1}, px", show=first)
            page.picture("Optical flow", f"flow/{name}_kitti_{t:04d}.png",
                         kitti_error_picture(flow, clip.flow[t], clip.valid[t], noc=~clip.occluded[t]),
                         f"{name}: KITTI devkit error image {t}->{t + 1} (occluded pixels darker)", show=first)
    page.report["optical_flow"]["_data"] = {"generator": "synthetic_clip", "frames": args.frames, "size": args.size,
                                            "seed": args.seed, "flow_scale_px": scale, "epe_scale_px": max_epe}


def _matplotlib_or_notice(page: _Page) -> bool:
    from motionflow.errors import MissingDependencyError
    from motionflow.viz.figure import require_matplotlib

    try:
        require_matplotlib()
        return True
    except MissingDependencyError:
        note = "scene-flow pictures skipped: they need matplotlib (pip install 'motionflow[viz]')"
        print(f"motionflow demo: notice: {note}", file=sys.stderr)
        page.notes.append(note)
        return False


def _scene(page: _Page, args, pictures: bool) -> None:
    from motionflow.datasets.synthetic import synthetic_lidar_pair
    from motionflow.eval.scene import scene_flow_metrics_per_sample
    from motionflow.registry import get_scene_flow_method
    from motionflow.viz.points import result_overlays, scene_flow_picture

    pair = synthetic_lidar_pair(seed=args.seed)
    best = args.scene_method
    names = [best] + ([SCENE_BASELINE] if SCENE_BASELINE != best else [])
    for name in names:
        # the ego motion is known (as from an AV dataset's poses); the baseline is then "static world"
        options = {"compensate_ego": True} if name == SCENE_BASELINE else {}
        result = get_scene_flow_method(name, **options)(pair.pc1, pair.pc2, ego_motion=pair.ego_motion)
        metrics = _with_units(scene_flow_metrics_per_sample(result.flow, pair.flow), "scene")
        page.report["scene_flow"][name] = {"metrics": metrics, "seconds": result.seconds,
                                           "iterations": result.iterations, "converged": result.converged}
        page.rows.append(("scene", name, metrics["epe3d"]["value"], metrics["acc3d_strict"]["value"], result.seconds))
        if not pictures:
            continue
        overlays = dict(result_overlays(result, len(pair.pc1)), ego_motion=pair.ego_motion)
        common = dict(gt=pair.flow, ground=pair.ground1, max_speed=1.5, **overlays)
        title = f"{name} on synthetic_lidar_pair(seed={args.seed})"
        page.picture("Scene flow", f"sceneflow/{name}.png", scene_flow_picture(pair.pc1, result.flow, title=title, **common),
                     f"{name}: bird's-eye view of estimate, ground truth and error (motion relative to the static world)")
        if name == best:
            page.picture("Scene flow", f"sceneflow/{name}_side.png",
                         scene_flow_picture(pair.pc1, result.flow, view="side", title=title, **common),
                         f"{name}: side view")
    page.report["scene_flow"]["_data"] = {"generator": "synthetic_lidar_pair", "seed": args.seed, "points": len(pair.pc1)}


def _accumulate(page: _Page, args, pictures: bool) -> None:
    """Chain per-pair flows over a synthetic sequence and compare with chaining the exact flows."""
    from motionflow.datasets.synthetic import synthetic_lidar_sequence
    from motionflow.sceneflow import accumulate
    from motionflow.viz import sweeps_picture

    seq = synthetic_lidar_sequence(num_sweeps=5, seed=args.seed)
    start = time.perf_counter()
    points, sweep = accumulate(seq["clouds"], method="icp")
    seconds = time.perf_counter() - start
    exact, _ = accumulate(seq["clouds"], flows=seq["flows"])
    static = np.concatenate([ground for ground in seq["ground"]])
    error = np.linalg.norm(points - exact, axis=1)
    metrics = {
        "sweeps": len(seq["clouds"]),
        "points": int(len(points)),
        "median_error_static_m": float(np.median(error[static])),
        "median_error_all_m": float(np.median(error)),
        "share_within_5cm": float(np.mean(error < 0.05)),
    }
    page.report["accumulation"] = {"method": "icp", "metrics": metrics, "seconds": seconds}
    page.rows.append(("accum", "icp (chained)", metrics["median_error_all_m"], metrics["share_within_5cm"], seconds))
    if pictures:
        page.picture("Accumulation", "sceneflow/accumulated.png",
                     sweeps_picture(points, sweep, title=f"{len(seq['clouds'])} sweeps chained by icp into the last frame"),
                     f"icp flows chained over {len(seq['clouds'])} sweeps: median error {metrics['median_error_all_m']:.3f} m")


def _write_index(page: _Page) -> None:
    from motionflow.viz.page import Fields, Gallery, Table, Text, write_page

    def value(entry, name):
        return (entry["metrics"].get(name) or {}).get("value")

    optical = {k: v for k, v in page.report["optical_flow"].items() if k != "_data"}
    scene = {k: v for k, v in page.report["scene_flow"].items() if k != "_data"}
    sections = [
        Text("What this is", "Both halves of motionflow on generated data with exact ground truth: the default "
             "methods (no weights needed) against a simple baseline each. Numbers are in metrics.json."),
        Table("Optical flow", ["method", "EPE (px)", "px1 (fraction)", "Fl-all (%)", "EPE noc (px)", "EPE occ (px)",
                               "seconds"],
              [[n, value(e, "epe"), value(e, "px1"), value(e, "fl_all"), value(e, "epe_noc"), value(e, "epe_occ"),
                e["seconds"]] for n, e in optical.items()]),
        Table("Scene flow", ["method", "EPE3D (m)", "AccStrict (fraction)", "AccRelax (fraction)",
                             "outliers (fraction)", "seconds", "iterations"],
              [[n, value(e, "epe3d"), value(e, "acc3d_strict"), value(e, "acc3d_relax"), value(e, "outliers"),
                e["seconds"], e["iterations"]] for n, e in scene.items()],
              note="The ego motion is given to every method; zero = a static world seen from the moving ego vehicle."),
    ]
    if "accumulation" in page.report:
        sections.append(Fields("Accumulation (icp, chained)", page.report["accumulation"]["metrics"]))
    sections += [Gallery(title, pictures) for title, pictures in page.galleries.items()]
    sections += [Text("Notice", note) for note in page.notes]
    data = {f"{half} {k}": v for half in ("optical_flow", "scene_flow") for k, v in page.report[half]["_data"].items()}
    sections.append(Fields("Generated data", data))
    write_page(page.out / "index.html", "motionflow demo", sections,
               subtitle="Flow pictures share one normalisation (max px on each); error maps share one scale.")


def run(args: argparse.Namespace) -> int:
    from motionflow.io.strict_json import json_safe
    from motionflow.io.atomic import atomic_write_bytes

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    page = _Page(out)
    pictures = _matplotlib_or_notice(page)
    _optical(page, args)
    _scene(page, args, pictures)
    _accumulate(page, args, pictures)
    atomic_write_bytes(out / "metrics.json", json.dumps(json_safe(page.report), indent=2, allow_nan=False).encode())
    _write_index(page)

    print(f"{'half':8s} {'method':18s} {'EPE':>8s} {'acc':>8s} {'seconds':>8s}")
    for half, name, epe, acc, seconds in page.rows:
        print(f"{half:8s} {name:18s} {epe:8.3f} {acc:8.3f} {seconds:8.2f}")
    print("(optical: EPE px, acc = px1 fraction; scene: EPE3D m, acc = AccStrict fraction; "
          "accum: median error m of 5 sweeps carried to the last, acc = share < 5 cm)")
    print(f"open {out / 'index.html'} (pictures and metrics.json beside it)")
    return 0
