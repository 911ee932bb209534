"""What the video-file job costs on top of the flow computation: ``motionflow estimate``'s bookkeeping.

One process, one generated clip written as a folder of PNG frames, one method; four ways to run it:

* ``engine``: :func:`motionflow.inference.stream_flow` over the frames, flows kept in memory (the
  reference: decoding + the method + resizing back);
* ``job``: :func:`motionflow.inference.process_video` into a fresh folder: the same, plus the manifest,
  one durable flow file per pair (temporary file, fsync, rename, fsync of the folder), the progress saved
  after every clip (with the warm start for ``classical``) and the report;
* ``job, no fsync``: the same with ``os.fsync`` replaced by a no-op (what durability costs);
* ``resume check``: a second ``process_video`` on the finished folder (identity check, nothing computed).

Prints seconds and the ratio to ``engine`` measured in the same run (the ratios are what to compare on a
loaded machine). Usage::

    python benchmarks/estimate.py [--method opencv-dis] [--frames 60] [--size 240 320] [--format flo]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def _write_frames(folder: Path, frames: int, size: tuple) -> None:
    import cv2

    from motionflow.datasets.synthetic import synthetic_clip

    folder.mkdir(parents=True)
    clip = synthetic_clip(num_frames=frames, size=size, seed=0)
    for i, f in enumerate(clip.frames):
        cv2.imwrite(str(folder / f"frame_{i:05d}.png"), f.transpose(1, 2, 0)[:, :, ::-1])


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="opencv-dis")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    parser.add_argument("--format", dest="fmt", default="flo", choices=("flo", "png", "npz"))
    args = parser.parse_args(argv)

    import motionflow.io.atomic as atomic
    from motionflow.inference import build_method, process_video, stream_flow
    from motionflow.io.video import FrameSource

    work = Path(tempfile.mkdtemp(prefix="motionflow-bench-"))
    try:
        frames = work / "frames"
        _write_frames(frames, args.frames, tuple(args.size))
        method = build_method(args.method)

        def engine():
            flows = [f for _, _, f in stream_flow(FrameSource(frames).iter(errors="yield"), method)]
            assert len(flows) == args.frames - 1

        def job(name: str):
            return lambda: process_video(frames, work / name, method=method, fmt=args.fmt, progress=False)

        rows = [("engine", _timed(engine)), ("job", _timed(job("a")))]
        fsync = atomic.os.fsync
        atomic.os.fsync = lambda fd: None
        try:
            rows.append(("job, no fsync", _timed(job("b"))))
        finally:
            atomic.os.fsync = fsync
        rows.append(("resume check", _timed(job("a"))))
        files = len(list((work / "a").glob(f"*.{args.fmt}")))
        print(f"{args.method}, {args.frames} frames {args.size[0]}x{args.size[1]}, {files} .{args.fmt} files "
              f"(preliminary on a shared machine: compare ratios)")
        print(f"{'run':<16}{'seconds':>10}{'x engine':>10}")
        for name, seconds in rows:
            print(f"{name:<16}{seconds:>10.3f}{seconds / rows[0][1]:>10.2f}")
        print(f"per flow file: job {1000 * (rows[1][1] - rows[0][1]) / files:.1f} ms over the engine, "
              f"without fsync {1000 * (rows[2][1] - rows[0][1]) / files:.1f} ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    np.seterr(all="ignore")
    main()
