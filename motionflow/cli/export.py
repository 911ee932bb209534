"""``motionflow export``: a flow network with its checkpoint as one ONNX file.

Exports one forward of the network's window (RAFT 2 frames, VideoFlow BOF 3 / MOF 5, StreamFlow 4) at
the padded size of ``--size`` frames (a multiple of 8, at least 128 px) with ``--iters`` iterations
unrolled: input ``frames`` (B, T, 3, H, W) float32 RGB in [0, 255]; outputs ``flow`` (and ``backward``
for VideoFlow), see ``motionflow.models.export``. The batch axis is dynamic; ``--dynamic-size`` makes
height and width dynamic too (slower to export). The file carries its model name, window layout and
iterations as metadata, so ``motionflow estimate --backend onnxruntime --onnx FILE`` needs nothing else.
After writing, ONNX Runtime is compared with torch on a moving texture and the max difference printed.
"""

from __future__ import annotations

import argparse
import re
import sys

#: Largest ONNX Runtime vs torch difference (px) accepted after an export. Float32 reorderings give
#: 1e-5 px for RAFT / BOF / StreamFlow and up to 3e-4 px for MOF (its x100 mask logits; SPEC section 3).
VERIFY_ATOL = 1e-3


def parse_size(text: str) -> tuple[int, int]:
    """argparse ``type=`` for ``HxW`` (``436x1024``): two positive integers."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise argparse.ArgumentTypeError(f"expected HxW in pixels, e.g. 436x1024, found {text!r}")
    return int(m.group(1)), int(m.group(2))


def add_parser(subparsers) -> argparse.ArgumentParser:
    from motionflow.cli.options import positive_int
    from motionflow.models import NETWORKS
    from motionflow.models.export import DEFAULT_OPSET, MIN_OPSET

    p = subparsers.add_parser("export", help="export a flow network to ONNX", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    # checked by export_onnx (one line, exit 2), not with choices= (argparse would print the whole usage first)
    p.add_argument("--model", required=True, help=f"network to export: {', '.join(sorted(NETWORKS))}")
    p.add_argument("--checkpoint", required=True, metavar="PATH", help="official checkpoint of the network")
    p.add_argument("--size", required=True, type=parse_size, metavar="HxW",
                   help="frame size (padded to a multiple of 8 and >= 128 px, as the method pads)")
    p.add_argument("--iters", type=positive_int, default=None,
                   help="refinement iterations (default: the method's, RAFT / VideoFlow 32, StreamFlow 15)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, metavar="K",
                   help=f"ONNX opset (default {DEFAULT_OPSET}; >= {MIN_OPSET})")
    p.add_argument("--dynamic-size", action="store_true", help="also make height and width dynamic")
    p.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime vs torch check")
    p.add_argument("--out", required=True, metavar="MODEL.onnx", help="the ONNX file to write")
    return p


def run(args: argparse.Namespace) -> int:
    from motionflow.models import export_onnx

    report = export_onnx(
        args.model,
        args.checkpoint,
        args.size,
        args.out,
        iters=args.iters,
        opset=args.opset,
        dynamic_size=args.dynamic_size,
        verify=not args.no_verify,
    )
    h, w = report.size
    dims = ", ".join(report.dynamic["frames"].values()) or "none"
    outputs = f"flow pairs {report.forward_pairs}" + (
        f", backward pairs {report.backward_pairs}" if report.backward_pairs else ""
    )
    print(f"{report.path}: {report.model}, frames (B, {report.window}, 3, {h}, {w}), {report.iters} iterations, "
          f"opset {report.opset}, dynamic: {dims}; {outputs}; exported in {report.seconds:.1f} s")
    if report.max_abs_diff is None:
        return 0
    print(f"ONNX Runtime vs torch: max |diff| {report.max_abs_diff:.3g} px")
    if not report.max_abs_diff <= VERIFY_ATOL:
        print(f"motionflow export: error: {report.path}: ONNX Runtime differs from torch by "
              f"{report.max_abs_diff:.3g} px (> {VERIFY_ATOL:g} px); do not deploy this file", file=sys.stderr)
        return 1
    return 0
