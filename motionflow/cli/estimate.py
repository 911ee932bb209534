"""``motionflow estimate``: optical flow for a video, a folder of frames or image files.

Writes one flow per consecutive pair into ``--out``, named after the first frame of the pair
(``frame_0001.flo``; ``frame_000012.flo`` for frame 12 of a video). Frames are streamed, so any
length of video works in bounded memory. A second run with the same ``--out`` resumes the run (an
interrupted one where it stopped, with the same results as an uninterrupted run) and refuses a run
with other options (``--no-resume`` starts over). Frames that cannot be used (undecodable, another
size) are reported by index and file at the end (exit code 1); the flows of every other pair are
kept. ``--format reynolds-rgb`` writes ReynoldsFlow+ images (|v_o|, |v_r|, grey frame: a motion
feature for downstream detectors) and implies ``--method reynolds``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from motionflow.errors import FormatError

from .options import add_progress_flags, positive_int, torch_device


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "estimate",
        help="optical flow for a video, a folder of frames or image files",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="a video file, a folder of frames, or image files (in order)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--method", default=None, help="registered optical-flow method (default: classical; see `motionflow list`)")
    p.add_argument("--checkpoint", default=None, metavar="PATH", help="checkpoint for learned methods")
    p.add_argument("--iters", type=positive_int, default=None, help="refinement iterations for iterative networks")
    p.add_argument("--preset", default=None, choices=("fast", "default", "accurate"), help="classical preset (default: default)")
    p.add_argument("--format", dest="fmt", default="flo", choices=("flo", "png", "npz", "reynolds-rgb"),
                   help="flo (Middlebury), png (KITTI 16-bit), npz, or reynolds-rgb (ReynoldsFlow+ PNGs)")
    p.add_argument("--viz", action="store_true",
                   help="also write a colour PNG per flow into DIR/viz (colour wheel and normalisation drawn on it)")
    p.add_argument("--preview", action="store_true",
                   help="also write DIR/preview.mp4 (H.264 with PyAV, the same pictures as --viz)")
    p.add_argument("--flow-scale", type=_pixels, default=None, metavar="PX",
                   help="colour normalisation of --viz / --preview / --rerun (default: one per video, the largest "
                        "per-flow 99th percentile magnitude)")
    p.add_argument("--reynolds-scale", type=_reynolds_scale, default=None, metavar="S|S_O,S_R|max",
                   help="--format reynolds-rgb: px/frame mapped to 255 in the |v_o| and |v_r| channels, the same for "
                        "every frame (default: max, each frame's largest magnitude)")
    p.add_argument("--rerun", default=None, metavar="FILE.rrd",
                   help="also write a Rerun recording (frames, flow pictures, colour wheel over time; needs rerun-sdk); "
                        "several inputs: FILE_<input>.rrd each")
    p.add_argument("--max-size", type=positive_int, default=None, metavar="PX",
                   help="process frames downscaled to this longer side; flows are scaled back to full size")
    p.add_argument("--device", type=torch_device, default=None, help="torch device, e.g. cpu or cuda")
    p.add_argument("--backend", default="torch", choices=("torch", "onnxruntime"),
                   help="run a learned network in torch (default) or its ONNX export in ONNX Runtime (--onnx)")
    p.add_argument("--onnx", default=None, metavar="MODEL.onnx",
                   help="file written by `motionflow export` (--backend onnxruntime; --method defaults to its network)")
    p.add_argument("--no-resume", action="store_true",
                   help="start over: recompute every flow in DIR (a resume with other options is refused)")
    add_progress_flags(p)
    return p


def _pixels(text: str) -> float:
    """``--flow-scale``: a positive number of pixels."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of pixels, found {text!r}")
    return value


def _reynolds_scale(text: str):
    """``--reynolds-scale``: ``max``, one positive px/frame for both channels, or ``S_O,S_R``."""
    from motionflow.classical.reynolds import reynolds_scales
    from motionflow.errors import MotionflowError

    if text == "max":
        return text
    try:
        values = tuple(float(v) for v in text.split(","))
        value = values[0] if len(values) == 1 else values
        reynolds_scales(value)  # the one check of a scale's count and range
    except (ValueError, MotionflowError):
        raise argparse.ArgumentTypeError(f"expected max, S or S_O,S_R in positive px/frame, found {text!r}") from None
    return value


def _recording(path, out: Path, several: bool):
    """``--rerun`` path of one job: the file itself, or ``FILE_<job>.rrd`` when several jobs write recordings."""
    if path is None or not several:
        return path
    path = Path(path)
    return path.with_name(f"{path.stem}_{out.name}{path.suffix or '.rrd'}")


def _jobs(inputs: list[str], out: Path) -> list[tuple[object, Path]]:
    """(source, output folder) per sequence: image files form one sequence; each video or folder is
    its own, in ``DIR/<name>`` when there are several."""
    from motionflow.io.video import FRAME_SUFFIXES

    paths = [Path(p) for p in inputs]
    for p in paths:
        if not p.exists():
            raise FormatError(f"{p}: expected a video file, a folder of frames or an image file, found nothing")
    if all(p.is_file() and p.suffix.lower() in FRAME_SUFFIXES for p in paths):
        if len(paths) < 2:
            raise FormatError(f"{paths[0]}: expected at least two image files for one flow, found one")
        return [(paths, out)]
    if any(p.is_file() and p.suffix.lower() in FRAME_SUFFIXES for p in paths):
        raise FormatError("INPUT: expected either image files only, or videos / folders, found a mix")
    if len(paths) == 1:
        return [(paths[0], out)]
    # two inputs with one name would share DIR/<name>, and the second would "resume" the first's flows
    # the name is the resolved path's ('..' and '.' name the folder they lead to), so DIR/<name> stays in DIR
    seen: dict = {}
    for p in paths:
        name = p.resolve().stem
        if not name or name in (".", ".."):
            raise FormatError(f"INPUT: expected a video or folder with a name (its flows go to {out}/<name>), found {p}")
        if name in seen:
            raise FormatError(
                f"INPUT: expected videos / folders with distinct names (each goes to {out}/<name>), "
                f"found {seen[name]} and {p} both named {name!r}"
            )
        seen[name] = p
    return [(p, out / p.resolve().stem) for p in paths]


def _skipped_frames(source, report, shown: int = 3) -> str:
    """One line: which frames had no flow and why (the first ``shown``; the report has them all)."""
    where = f"{len(source)} image files" if isinstance(source, list) else str(source)
    items = [f"index {i} ({why})" for i, why in report.problems.items()]
    more = f"; and {len(items) - shown} more (see {report.out / 'estimate_report.json'})" if len(items) > shown else ""
    return (f"{where}: {len(items)} frame{'s' if len(items) > 1 else ''} skipped: {'; '.join(items[:shown])}{more}; "
            f"the flows of all other pairs are in {report.out}")


def _backend_options(args: argparse.Namespace) -> dict:
    """``--backend`` / ``--onnx`` as method options; ``network``: the network the ONNX file was exported from."""
    if args.backend == "torch" and args.onnx is None:
        return {}
    from motionflow.errors import UnknownNameError
    from motionflow.models import NETWORKS
    from motionflow.models.onnx_runtime import exported_network

    if args.backend == "torch":
        raise UnknownNameError(f"--onnx {args.onnx} needs --backend onnxruntime")
    if args.onnx is None:
        raise UnknownNameError("--backend onnxruntime needs --onnx MODEL.onnx (a file written by motionflow export)")
    if args.method is not None and args.method not in NETWORKS:
        raise UnknownNameError(
            f"--backend onnxruntime runs an exported network ({', '.join(sorted(NETWORKS))}), found --method {args.method}"
        )
    options = {"backend": "onnxruntime", "onnx": args.onnx}
    if args.method is None:
        options["network"] = exported_network(args.onnx)
    return options


def run(args: argparse.Namespace) -> int:
    from motionflow.errors import UnknownNameError
    from motionflow.inference import process_video

    from .options import show_progress

    options = _backend_options(args)
    method = args.method or options.pop("network", None) or ("reynolds" if args.fmt == "reynolds-rgb" else "classical")
    if args.fmt == "reynolds-rgb" and method != "reynolds":
        raise UnknownNameError(f"--format reynolds-rgb encodes the reynolds method, found --method {method}")
    if args.reynolds_scale is not None and args.fmt != "reynolds-rgb":
        raise UnknownNameError(f"--reynolds-scale applies to --format reynolds-rgb only, found --format {args.fmt}")
    if args.fmt == "reynolds-rgb":
        options["reynolds_scale"] = args.reynolds_scale or "max"
    if args.preset is not None:
        if method != "classical":
            raise UnknownNameError(f"--preset applies to --method classical only, found --method {method}")
        options["preset"] = args.preset
    status = 0
    jobs = _jobs(args.inputs, Path(args.out))
    for source, out in jobs:
        report = process_video(
            source,
            out,
            method=method,
            fmt=args.fmt,
            viz=args.viz,
            preview=args.preview,
            flow_scale=args.flow_scale,
            rerun=_recording(args.rerun, out, len(jobs) > 1),
            max_size=args.max_size,
            resume=not args.no_resume,
            progress=show_progress(args),
            checkpoint=args.checkpoint,
            iters=args.iters,
            device=args.device,
            **options,
        )
        print(
            f"{out}: {len(report.written)} flows written, {report.skipped} already there, "
            f"{report.frames} frames read in {report.seconds:.1f} s ({report.fps:.2f} frames/s)"
        )
        if report.unreadable:
            print(f"motionflow estimate: error: {_skipped_frames(source, report)}", file=sys.stderr)
            status = 1
    return status
