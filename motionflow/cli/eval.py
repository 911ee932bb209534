"""``motionflow eval``: benchmark a method, or a folder of predictions, on a dataset.

    motionflow eval --dataset NAME --root DIR [--split S] [--pass clean|final] [--protocol NAME]
                    (--method M [--checkpoint P] [--iters N] | --predictions DIR)
                    --out REPORT.json [--max-samples N] [--workers N] [--engine local|ray [--address A]]
                    [--write-predictions DIR] [--device D] [--no-resume] [--option KEY=VALUE ...]
                    [--method-option KEY=VALUE ...]

Without --protocol the published protocol of the dataset and method is used (``motionflow list`` lists
them; the report records which, with every option and deviation). Writes REPORT.csv, REPORT.md, then
REPORT.json, and the per-sample records REPORT.samples.jsonl (a rerun of the same evaluation with the
same --out resumes from them; a rerun of another one is refused: pass --no-resume). Exit codes: 0 ok,
1 failure, 2 bad usage (unknown dataset, method, protocol or engine; the message lists the valid names).
"""

from __future__ import annotations

import argparse
import sys

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
    p.add_argument("--iters", type=int, default=None, help="refinement iterations for iterative methods")
    p.add_argument("--out", required=True, metavar="REPORT.json", help="report path (.csv and .md are written beside it)")
    p.add_argument("--max-samples", type=int, default=None, metavar="N", help="evaluate only the first N samples")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="local worker processes (or Ray CPUs when local)")
    p.add_argument("--engine", default="local", choices=("local", "ray"), help="local process pool or a Ray cluster")
    p.add_argument("--address", default=None, help="Ray cluster address (local Ray when omitted)")
    p.add_argument("--chunk-size", default="1", metavar="K|scene", help="samples per worker task, or 'scene' for one task per scene / log")
    p.add_argument("--write-predictions", default=None, metavar="DIR", help="also save the method's flows in the dataset's naming")
    p.add_argument("--device", default="cpu", help="torch device for optical-flow methods")
    p.add_argument("--no-resume", action="store_true", help="ignore the records of an earlier, interrupted run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
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
    )
    sys.stdout.write(report.to_markdown())
    return 0
