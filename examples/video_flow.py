"""Optical flow for a video with the Python API (no checkpoint, no GPU needed).

    python examples/video_flow.py                      # makes a small synthetic video first
    python examples/video_flow.py my_clip.mp4 --out flows --max-size 640

1. ``process_video``: the whole video, streamed, one ``.flo`` per consecutive pair plus colour PNGs
   and an mp4 preview (what ``motionflow estimate`` does);
2. ``estimate_flow``: a few frames in memory -> a FlowPrediction tensor you can use directly;
3. ``flow_to_color``: a picture of one flow.
"""

from __future__ import annotations

import argparse
import tempfile
from itertools import islice
from pathlib import Path

import numpy as np

from motionflow import estimate_flow
from motionflow.inference import process_video
from motionflow.io import write_image
from motionflow.io.video import VideoWriter, iter_frames
from motionflow.viz import flow_to_color


def synthetic_video(path: Path, frames: int = 8) -> Path:
    """Write a small mp4 of textured layers moving (the package's synthetic clip generator)."""
    from motionflow.datasets.synthetic import synthetic_clip

    clip = synthetic_clip(num_frames=frames, size=(120, 160), seed=0, max_motion=4.0)
    with VideoWriter(path, fps=8) as writer:
        for frame in clip.frames:
            writer.write(frame.transpose(1, 2, 0))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("video", nargs="?", help="a video file or a folder of frames (default: a synthetic video)")
    ap.add_argument("--out", default=None, help="output folder (default: a temporary folder)")
    ap.add_argument("--method", default="classical", help="any registered optical-flow method")
    ap.add_argument("--max-size", type=int, default=None, help="downscale frames to this longer side")
    args = ap.parse_args()

    out = Path(args.out or tempfile.mkdtemp(prefix="motionflow-example-"))
    video = Path(args.video) if args.video else synthetic_video(out / "synthetic.mp4")

    # 1. the whole video, streamed to flow files (resumes if run again with the same --out)
    report = process_video(video, out / "flows", method=args.method, viz=True, preview=True, max_size=args.max_size)
    print(f"{len(report.written)} flows in {out / 'flows'} ({report.fps:.1f} frames/s); preview: {report.preview}")
    if report.unreadable:
        print(f"unreadable frames: {report.unreadable}")

    # 2. the first four frames in memory: (T, 3, H, W) uint8 -> flow (T-1, 2, H, W)
    frames = np.stack([f.transpose(2, 0, 1) for _, f in islice(iter_frames(video), 4)])
    pred = estimate_flow(frames, method=args.method)
    speed = pred.flow.norm(dim=1).mean(dim=(1, 2))
    print("mean speed (px/frame) of the first pairs:", [round(float(s), 2) for s in speed])

    # 3. a picture of the first flow
    write_image(out / "first_flow.png", flow_to_color(pred.flow[0]))
    print(f"wrote {out / 'first_flow.png'}")


if __name__ == "__main__":
    main()
