"""``motionflow eval``: benchmark a method, or a folder of predictions, on a dataset.

    motionflow eval --dataset NAME --root DIR [--split S] [--pass clean|final] [--protocol NAME]
                    (--method M [--checkpoint P] [--iters N] | --predictions DIR)
                    --out REPORT.json [--max-samples N] [--workers N] [--engine local|ray [--address A]]
                    [--write-predictions DIR] [--device D] [--no-resume] [--option KEY=VALUE ...]
                    [--method-option KEY=VALUE ...] [--viz N] [--rerun FILE.rrd]

Without --protocol the published protocol of the dataset and method is used (``motionflow list`` lists
them; the report records which, with every option and deviation). Writes REPORT.csv, REPORT.md,
REPORT.html (a static page; with --viz N the pictures of the first N samples, from REPORT_viz/), then
REPORT.json, and the per-sample records REPORT.samples.jsonl (a rerun of the same evaluation with the
same --out resumes from them; a rerun of another one is refused: pass --no-resume). Exit codes: 0 ok,
1 failure, 2 bad usage (unknown dataset, method, protocol or engine; the message lists the valid names).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .options import positive_int, torch_device

NO_ROOT_DATASETS = ("synthetic-flow", "synthetic-lidar")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a method or a folder of predictions on a benchmark dataset",
        description="Evaluate an optical-flow or scene-flow method (or flows computed elsewhere) on a "
        "dataset, with the official devkits' metric definitions. Writes JSON, CSV and markdown reports.",
    )
    p.add_argument("--dataset", required=True, help="dataset name (see `motionflow list`), e.g. sintel, kitti2015, av2")
    p.add_argument("--root", default=None, help="dataset root folder (not needed for synthetic-flow / synthetic-lidar)")
    p.add_argument("--split", default=None, help="dataset split (dataset default when omitted)")
    p.add_argument("--pass", dest="pass_", default=None, choices=("clean", "final"), help="Sintel render pass")
    p.add_argument("--protocol", default=None, metavar="NAME",
                   help="evaluation protocol (see `motionflow list`); default: the published one of the dataset and method")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--method", default=None, help="registered method name, e.g. raft, classical, opencv-dis, nsfp")
    src.add_argument("--predictions", default=None, metavar="DIR", help="folder of predicted flows in the dataset's own naming")
    p.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE",
        help="dataset loader option (repeatable), e.g. --option frames=3 --option 'size=(96, 128)'",
    )
    p.add_argument(
        "--method-option", action="append", default=[], metavar="KEY=VALUE",
        help="method option (repeatable), e.g. --method-option preset=accurate --method-option max_points=8192",
    )
    p.add_argument("--checkpoint", default=None, help="checkpoint file for learned methods")
    p.add_argument("--iters", type=positive_int, default=None, help="refinement iterations for iterative methods")
    p.add_argument("--out", required=True, metavar="REPORT.json", help="report path (.csv and .md are written beside it)")
    p.add_argument("--max-samples", type=positive_int, default=None, metavar="N", help="evaluate only the first N samples")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="local worker processes (or Ray CPUs when local)")
    p.add_argument("--engine", default="local", choices=("local", "ray"), help="local process pool or a Ray cluster")
    p.add_argument("--address", default=None, help="Ray cluster address (local Ray when omitted)")
    p.add_argument("--chunk-size", default="1", metavar="K|scene", help="samples per worker task, or 'scene' for one task per scene / log")
    p.add_argument("--write-predictions", default=None, metavar="DIR", help="also save the method's flows in the dataset's naming")
    p.add_argument("--device", type=torch_device, default="cpu", help="torch device for optical-flow methods")
    p.add_argument("--no-resume", action="store_true", help="ignore the records of an earlier, interrupted run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--viz", type=int, default=0, metavar="N",
                   help="pictures of the first N samples (lidar: estimate / GT / error in metres, needs matplotlib; "
                        "optical: flow + EPE map) into REPORT_viz/, shown in REPORT.html")
    p.add_argument("--rerun", default=None, metavar="FILE.rrd",
                   help="lidar: a Rerun recording of the first --viz N samples (default 10): clouds, flow, GT, errors")
    return p


def run(args) -> int:
    from motionflow.eval import evaluate

    def usage(msg: str) -> int:
        print(f"motionflow eval: error: {msg}", file=sys.stderr)
        return 2

    if args.root is None and args.dataset not in NO_ROOT_DATASETS:
        return usage(f"--root is required for dataset {args.dataset!r}")
    if args.predictions is not None and (args.checkpoint or args.iters is not None or args.write_predictions):
        return usage("--checkpoint, --iters and --write-predictions need --method, not --predictions")
    if args.address and args.engine != "ray":
        return usage("--address needs --engine ray")
    if args.workers < 1:
        return usage("--workers must be >= 1")
    chunk_size = args.chunk_size
    if chunk_size != "scene":
        if not chunk_size.isdigit() or int(chunk_size) < 1:
            return usage(f"--chunk-size: expected a positive integer or 'scene', found {chunk_size!r}")
        chunk_size = int(chunk_size)
    from .options import parse_key_values

    parsed = {}
    for flag, items in (("--option", args.option), ("--method-option", args.method_option)):
        try:
            parsed[flag] = parse_key_values(items, flag)
        except ValueError as exc:
            return usage(str(exc))
    if args.predictions is not None and parsed["--method-option"]:
        return usage("--method-option needs --method, not --predictions")
    method_options = dict(parsed["--method-option"])
    if args.checkpoint is not None:
        method_options["checkpoint"] = args.checkpoint
    if args.iters is not None:
        method_options["iters"] = args.iters
    dataset_options = dict(parsed["--option"])
    if args.pass_ is not None:
        dataset_options["pass_name"] = args.pass_
    views = _views_plan(args)
    if isinstance(views, str):
        return usage(views)
    report = evaluate(
        args.dataset,
        args.method,
        predictions_dir=args.predictions,
        root=args.root,
        split=args.split,
        dataset_options=dataset_options,
        method_options=method_options,
        out=args.out,
        max_samples=args.max_samples,
        workers=args.workers,
        engine=args.engine,
        address=args.address,
        chunk_size=chunk_size,
        device=args.device,
        write_predictions=args.write_predictions,
        resume=not args.no_resume,
        progress=not args.no_progress,
        protocol=args.protocol,
        **views,
    )
    if views:
        _views_write(args, report, Path(views["viz_dir"]))
    sys.stdout.write(report.to_markdown())
    return 0


def _views_plan(args):
    """``evaluate`` keywords of ``--viz`` / ``--rerun`` (empty without them), or a usage error text."""
    if args.viz < 0:
        return f"--viz: expected a number of samples >= 0, found {args.viz}"
    if not args.viz and not args.rerun:
        return {}
    from motionflow.datasets import dataset_class
    from motionflow.errors import UnknownNameError

    try:
        scene = dataset_class(args.dataset).kind == "scene"
    except UnknownNameError:
        return {}  # evaluate() refuses the name and lists the valid ones
    if args.rerun and not scene:
        return f"--rerun: recordings are for lidar datasets, found dataset {args.dataset!r}"
    if scene:
        from motionflow.viz.figure import require_matplotlib

        require_matplotlib()
    out = Path(args.out)
    return {"viz_dir": out.with_name(f"{out.stem}_viz"), "viz_samples": args.viz or 10, "viz_arrays": bool(args.rerun)}


def _views_write(args, report, folder: Path) -> None:
    """REPORT.html again with the pictures, and the ``--rerun`` recording (motionflow.viz.samples)."""
    from motionflow.viz.page import write_report_page
    from motionflow.viz.samples import log_sample_views, read_sample_views

    count = args.viz or 10
    views = [v for v in (read_sample_views(folder) if folder.is_dir() else []) if v["index"] < count]
    pictures = [(f"{folder.name}/{v['picture'].name}", v["caption"]) for v in views]
    write_report_page(Path(args.out).with_suffix(".html"), report.to_dict(), pictures)
    if args.rerun:
        log_sample_views(views, args.rerun)
