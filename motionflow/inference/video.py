"""The video-file job: a video, a folder of frames or image files -> one flow file per pair.

:func:`process_video` streams frames through the clip engine (:func:`~motionflow.inference.clips.stream_flow`,
never more than one clip of frames in memory), writes one flow file per consecutive pair, is resumable,
and optionally writes colour PNGs and an mp4 preview. ``motionflow estimate`` is a thin wrapper around it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import FormatError, ShapeError
from .clips import _progress, build_method, stream_flow

__all__ = ["FLOW_FORMATS", "VideoReport", "process_video", "write_preview"]

#: ``--format`` name -> file suffix (``reynolds-rgb``: the RGB encoding of a Reynolds flow as PNG,
#: :func:`motionflow.classical.reynolds.reynolds_to_rgb`)
FLOW_FORMATS = {"flo": ".flo", "png": ".png", "npz": ".npz", "reynolds-rgb": ".png"}


@dataclass
class VideoReport:
    """What :func:`process_video` did.

    Attributes:
        out: output folder.
        written: names of the flow files written by this run.
        skipped: pairs whose flow already existed (resumed; not recomputed).
        unreadable: indices of frames that could not be read (no flow touches them).
        frames: frames read by this run.
        seconds: wall-clock time.
        preview: path of the mp4 preview, or None.
    """

    out: Path
    written: list = field(default_factory=list)
    skipped: int = 0
    unreadable: list = field(default_factory=list)
    frames: int = 0
    seconds: float = 0.0
    preview: Optional[Path] = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "out": str(self.out),
            "written": len(self.written),
            "skipped": self.skipped,
            "unreadable_frames": list(self.unreadable),
            "frames": self.frames,
            "seconds": round(self.seconds, 3),
            "fps": round(self.fps, 3),
            "preview": None if self.preview is None else str(self.preview),
        }


def _legend_overlay(color: np.ndarray) -> np.ndarray:
    """Put the colour-wheel legend in the top-right corner of a flow picture (1/5 of the short side)."""
    from ..viz import color_wheel_legend

    h, w = color.shape[:2]
    size = max(16, min(h, w) // 5)
    if size + 4 > min(h, w):
        return color
    out = color.copy()
    out[4 : 4 + size, w - 4 - size : w - 4] = color_wheel_legend(size)
    return out


def _check_names(src, out: Path, target) -> None:
    """Refuse file lists whose flows would collide: two first frames with one stem would share a flow
    file (the later pair overwritten, or skipped as already there on resume), and a flow may not
    replace an input frame."""
    if src.files is None:
        return
    firsts: dict = {}
    for i, f in enumerate(src.files[:-1]):
        if f.stem in firsts:
            raise FormatError(
                f"{f}: expected frames with distinct file names (flows are named after them), "
                f"found the name {f.stem!r} also for {src.files[firsts[f.stem]]}"
            )
        firsts[f.stem] = i
    inputs = {f.resolve() for f in src.files}
    for i in range(len(src) - 1):
        if target(i).resolve() in inputs:
            raise FormatError(
                f"out {out}: expected an output folder whose flow files do not replace input frames, "
                f"found that flow {target(i).name} would overwrite the frame {target(i)}"
            )


def _write_outputs(path: Path, flow: np.ndarray, frame: np.ndarray, fmt: str, viz_path: Optional[Path]) -> None:
    """Write one pair's flow ``(H, W, 2)`` in ``fmt`` to ``path`` (and its colour PNG to ``viz_path``)."""
    from ..io import write_flow
    from ..io.image import write_image

    if fmt == "reynolds-rgb":
        from ..classical.reynolds import reynolds_to_rgb

        write_image(path, reynolds_to_rgb(flow, frame))
    else:
        write_flow(path, flow)
    if viz_path is not None:
        from ..viz import flow_to_color

        write_image(viz_path, flow_to_color(flow))


def process_video(
    source, out, method: Any = "classical", fmt: str = "flo", viz: bool = False, preview: bool = False,
    max_size: Optional[int] = None, resume: bool = True, progress: bool = True,
    checkpoint=None, iters=None, device=None, **options,
) -> VideoReport:
    """Turn a video / folder of frames / list of image files into one flow file per consecutive pair.

    Args:
        source: video file, folder of frames, or list of image files.
        out: output folder. Flow ``i -> i+1`` is ``out / f"{name(i)}{suffix}"`` with ``name`` the
            frame file's stem (``frame_000012`` for a video); ``viz`` PNGs go to ``out / "viz"``.
        method: registered name or method object.
        fmt: ``"flo"`` (Middlebury), ``"png"`` (KITTI 16-bit), ``"npz"``, or ``"reynolds-rgb"`` (PNG
            pictures of :func:`~motionflow.classical.reynolds.reynolds_to_rgb`; meant for ``method="reynolds"``).
        viz: also write a colour PNG per flow.
        preview: also write ``out / "preview.mp4"`` (flow colours with the colour-wheel legend),
            built at the end from the flow files (so it is complete after a resumed run).
        max_size: process frames downscaled so their longer side is at most this; flows are scaled
            back to the original resolution.
        resume: skip pairs whose flow file exists (reading starts at the first missing pair, and
            frames needed by no missing pair are read but not processed).
        progress: tqdm progress bar (frames, with frames per second).

    Returns:
        :class:`VideoReport`. Unreadable frames are listed by index in the report (and in
        ``out / "estimate_report.json"``); the flows of every other pair are written.
    """
    from ..io import atomic_write_bytes
    from ..io.video import FrameSource

    if fmt not in FLOW_FORMATS:
        raise ShapeError(f"fmt: expected one of {', '.join(FLOW_FORMATS)}, found {fmt!r}")
    suffix = FLOW_FORMATS[fmt]
    src = FrameSource(source)
    out = Path(out)

    def target(index: int) -> Path:
        return out / f"{src.name(index)}{suffix}"

    _check_names(src, out, target)
    m = build_method(method, checkpoint=checkpoint, iters=iters, device=device, **options)
    out.mkdir(parents=True, exist_ok=True)
    report = VideoReport(out=out)
    total = len(src)

    def missing(pair: int) -> bool:
        # pairs past the container's frame count (an estimate for some videos) count as missing
        return pair >= 0 and not (resume and target(pair).exists())

    report.skipped = sum(not missing(p) for p in range(total - 1))
    start = next((p for p in range(total - 1) if missing(p)), max(total - 1, 0))
    t0 = time.perf_counter()
    bar = _progress(total, "frame", progress, initial=start)
    bad: list[int] = []

    def frames():
        # a frame that belongs to no missing pair is not handed on: the gap breaks the chain, so
        # flows that exist after the resume point (e.g. beyond an unreadable frame) are not recomputed
        for index, frame in src.iter(start=start, errors="yield"):
            report.frames += 1
            bar.update(1)
            if frame is not None and not (missing(index - 1) or missing(index)):
                continue
            yield index, frame

    try:
        for index, frame, flow in stream_flow(frames(), m, max_size=max_size, on_bad_frame=bad.append):
            viz_path = out / "viz" / f"{src.name(index)}.png" if viz else None
            _write_outputs(target(index), flow, frame, fmt, viz_path)
            report.written.append(target(index).name)
    finally:
        bar.close()
        report.unreadable = sorted(set(bad))
        report.seconds = time.perf_counter() - t0
    if preview:
        report.preview = write_preview(src, out, suffix, src.fps or 10.0, images=fmt == "reynolds-rgb")
    atomic_write_bytes(out / "estimate_report.json", json.dumps(report.to_dict(), indent=2).encode())
    return report


def write_preview(src, out: Path, suffix: str, fps: float, images: bool = False) -> Optional[Path]:
    """Write ``out / "preview.mp4"`` from the flow files of ``out`` (one colour frame per flow, one
    common colour scale: the 99th percentile magnitude of the first flow, legend top right).
    With ``images=True`` the files are pictures (``reynolds-rgb``) and are written as they are."""
    from ..io import read_flow, read_image
    from ..io.video import VideoWriter
    from ..viz import flow_to_color

    if src.files is not None:
        paths = [out / f"{src.name(i)}{suffix}" for i in range(len(src))]
    else:
        # a video's frame count is the container's estimate (0 when unknown): take every flow file
        # of the video's naming, ``frame_{index:06d}`` (zero-padded, so name order is frame order)
        paths = sorted(out.glob(f"frame_[0-9]*{suffix}"))
    paths = [p for p in paths if p.exists()]
    if not paths:
        return None
    target = out / "preview.mp4"
    tmp = out / ".preview.tmp.mp4"
    scale = None
    with VideoWriter(tmp, fps=fps) as writer:
        for p in paths:
            if images:
                writer.write(read_image(p))
                continue
            flow, valid = read_flow(p)
            if scale is None:
                mag = np.linalg.norm(flow[valid], axis=-1) if valid.any() else np.zeros(1)
                scale = max(float(np.percentile(mag, 99)), 1.0)
            flow = np.where(valid[..., None], flow, np.nan)
            writer.write(_legend_overlay(flow_to_color(flow, max_flow=scale)))
    tmp.replace(target)
    return target
