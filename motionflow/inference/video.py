"""The video-file job: a video, a folder of frames or image files -> one flow file per pair.

:func:`process_video` streams frames through the clip engine (:func:`~motionflow.inference.clips.stream_flow`,
never more than one clip of frames in memory), writes one flow file per consecutive pair, is resumable,
and optionally writes colour PNGs and an mp4 preview. ``motionflow estimate`` is a thin wrapper around it.
"""

from __future__ import annotations

import datetime
import numbers
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..errors import FormatError, ShapeError, UnknownNameError
from .clips import _progress, build_method, stream_flow
from .resume import LOCK, STATE, Progress, check_manifest, read_progress, run_identity, write_manifest, write_progress

__all__ = ["FLOW_FORMATS", "VideoReport", "process_video", "write_preview", "flow_files"]

#: ``--format`` name -> file suffix (``reynolds-rgb``: the ReynoldsFlow+ image as PNG,
#: :func:`motionflow.classical.reynolds.reynolds_rgb`)
FLOW_FORMATS = {"flo": ".flo", "png": ".png", "npz": ".npz", "reynolds-rgb": ".png"}


@dataclass
class VideoReport:
    """What :func:`process_video` did: this session's counts, and the totals of the whole run (all the
    sessions that wrote into ``out``; what ``out / "estimate_report.json"`` holds).

    Attributes:
        out: output folder.
        written: names of the flow files written by this session.
        skipped: pairs whose flow already existed (resumed; not recomputed).
        unreadable: indices of the frames that could not be used, whole run (no flow touches them).
        problems: ``{index: why}`` for them (the file and the reason: undecodable, another size...).
        frames: frames read by this session.
        seconds: wall-clock time of this session.
        preview: path of the mp4 preview, or None.
        flow_scale: the normalisation (px) of the colour PNGs and the preview, or None.
        total_flows: flow files of the run in ``out``.
        total_frames: frames of the source (for a video: at least the container's count).
        total_seconds: compute time of all sessions.
        sessions: sessions that worked on the run, this one included.
    """

    out: Path
    written: list = field(default_factory=list)
    skipped: int = 0
    unreadable: list = field(default_factory=list)
    problems: dict = field(default_factory=dict)
    frames: int = 0
    seconds: float = 0.0
    preview: Optional[Path] = None
    flow_scale: Optional[float] = None
    total_flows: int = 0
    total_frames: int = 0
    total_seconds: float = 0.0
    sessions: int = 1

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        """The whole run's totals, and this session's counts under ``"session"``."""
        return {
            "out": str(self.out),
            "written": self.total_flows,
            "unreadable_frames": list(self.unreadable),
            "unreadable_reasons": {str(i): why for i, why in sorted(self.problems.items())},
            "frames": self.total_frames,
            "seconds": round(self.total_seconds, 3),
            "sessions": self.sessions,
            "preview": None if self.preview is None else str(self.preview),
            "flow_scale_px": self.flow_scale,
            "session": {
                "written": len(self.written),
                "skipped": self.skipped,
                "frames": self.frames,
                "seconds": round(self.seconds, 3),
                "fps": round(self.fps, 3),
            },
        }


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


def _write_outputs(path: Path, flow: np.ndarray, frame: np.ndarray, fmt: str, viz_path: Optional[Path],
                   extras: Optional[dict] = None, reynolds_scale="max", flow_scale: Optional[float] = None) -> None:
    """Write one pair's flow ``(H, W, 2)`` in ``fmt`` to ``path`` (and its colour PNG to ``viz_path``,
    normalised to ``flow_scale`` px when given); ``reynolds-rgb`` takes ``extras["v_o"]`` and
    ``extras["v_r"]`` ``(H, W, 2)`` besides, mapped with ``reynolds_scale``."""
    from ..io import write_flow
    from ..io.image import write_image

    if fmt == "reynolds-rgb":
        from ..classical.reynolds import ReynoldsFlowResult, reynolds_rgb

        parts = {k: extras[k].transpose(2, 0, 1) for k in ("v_o", "v_r")}
        result = ReynoldsFlowResult(flow=flow.transpose(2, 0, 1), **parts)
        write_image(path, reynolds_rgb(result, frame, scale=reynolds_scale))
    else:
        write_flow(path, flow)
    if viz_path is not None:  # reynolds-rgb keeps no flow file: its flow picture is drawn now
        from ..viz import flow_picture

        write_image(viz_path, flow_picture(flow, max_flow=flow_scale))


class _Session:
    """One session of a run in ``out``: where it starts, which pairs it computes, what it saves.

    A fresh run (or ``resume=False``) writes the manifest and computes every pair. A resume of an
    interrupted run starts at its last clip boundary with the saved warm start and recomputes every
    pair from there (the same clips as an uninterrupted run, so the same bytes). A rerun of a finished
    run computes only the pairs whose flow file is missing (e.g. beside frames that were unreadable).
    """

    def __init__(self, src, out: Path, suffix: str, identity: dict, info: dict, resume: bool):
        self.src, self.out, self.suffix = src, out, suffix
        self.t0 = time.perf_counter()
        pairs = range(len(src) - 1)
        same = resume and check_manifest(out, identity, any(self.target(p).exists() for p in pairs))
        prior = read_progress(out) if same else None
        if not same:
            (out / STATE).unlink(missing_ok=True)
            write_manifest(out, identity, info)
        self.prior = prior or Progress()
        self.warm_start = None
        if not self.prior.complete:
            self.start = self.prior.next
            self.missing = lambda p: p >= self.start
            if self.prior.warm_start is not None:
                self.warm_start = torch.from_numpy(self.prior.warm_start)
        else:
            self.missing = lambda p: p >= 0 and not self.target(p).exists()
            self.start = next((p for p in pairs if self.missing(p)), max(len(src) - 1, 0))

    def target(self, index: int) -> Path:
        return self.out / f"{self.src.name(index)}{self.suffix}"

    def unreadable(self) -> dict:
        """``{index: why}`` of the whole run: the earlier sessions' before ``start``, and this one's."""
        before = {i: why for i, why in self.prior.unreadable.items() if i < self.start}
        return dict(sorted({**before, **self.src.problems}.items()))

    def save(self, next_index: int, warm, complete: Optional[bool] = None) -> None:
        """Save the progress at a clip boundary (``stream_flow``'s ``on_clip``), or at the end."""
        write_progress(self.out, Progress(
            next=next_index, complete=self.prior.complete if complete is None else complete,
            warm_start=None if warm is None else warm.numpy(), unreadable=self.unreadable(),
            seconds=self.prior.seconds + time.perf_counter() - self.t0, sessions=self.prior.sessions + 1,
        ))

    def finish(self, report: VideoReport, last_index: int) -> None:
        """Mark the run finished and put its totals into ``report``."""
        self.save(max(last_index, 0), None, complete=True)
        report.problems = self.unreadable()
        report.unreadable = list(report.problems)
        report.total_flows = len(flow_files(self.src, self.out, self.suffix))
        report.total_frames = max(len(self.src), last_index + 1)
        report.total_seconds = self.prior.seconds + report.seconds
        report.sessions = self.prior.sessions + 1


def _run_info(source, checkpoint, device) -> dict:
    """What the manifest records beside the identity (not compared on resume)."""
    if isinstance(source, (list, tuple)):
        source = f"{len(source)} image files from {source[0]}" if source else "no image files"
    return {
        "source": str(source),
        "checkpoint": None if checkpoint is None or not isinstance(checkpoint, (str, Path)) else str(checkpoint),
        "device": None if device is None else str(device),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def process_video(
    source, out, method: Any = "classical", fmt: str = "flo", viz: bool = False, preview: bool = False,
    max_size: Optional[int] = None, resume: bool = True, progress: bool = True,
    checkpoint=None, iters=None, device=None, flow_scale: Optional[float] = None, rerun=None,
    reynolds_scale="max", **options,
) -> VideoReport:
    """Turn a video / folder of frames / list of image files into one flow file per consecutive pair.

    Args:
        source: video file, folder of frames, or list of image files.
        out: output folder. Flow ``i -> i+1`` is ``out / f"{name(i)}{suffix}"`` with ``name`` the
            frame file's stem (``frame_000012`` for a video); ``viz`` PNGs go to ``out / "viz"``.
        method: registered name or method object.
        fmt: ``"flo"`` (Middlebury), ``"png"`` (KITTI 16-bit), ``"npz"``, or ``"reynolds-rgb"`` (PNG
            ReynoldsFlow+ images of :func:`~motionflow.classical.reynolds.reynolds_rgb`; needs ``method="reynolds"``).
        viz: also write a colour PNG per flow (the colour wheel and the normalisation drawn on it).
        preview: also write ``out / "preview.mp4"`` (H.264 when PyAV is installed; the same pictures).
            PNGs, preview and ``rerun`` are drawn at the end from the flow files (complete after a
            resumed run) on one normalisation for the whole video (:mod:`motionflow.viz.sequence`).
        flow_scale: that normalisation in px (default: the largest per-flow 99th percentile magnitude;
            ``reynolds-rgb`` keeps no flow files, so without it each pair's PNG has its own).
        reynolds_scale: ``reynolds-rgb`` only: the ``scale`` of
            :func:`~motionflow.classical.reynolds.reynolds_rgb` (``"max"`` per frame, or fixed px/frame
            ``s`` or ``(s_o, s_r)``: the same brightness for the same speed in every frame).
        rerun: also write this Rerun recording (``.rrd``: frames, flow pictures, the wheel, over time).
        max_size: process frames downscaled so their longer side is at most this (pixels, >= 1);
            flows are scaled back to the original resolution.
        resume: continue the run in ``out`` (see :mod:`motionflow.inference.resume`): an interrupted
            run resumes at its last clip boundary and gives the bytes of an uninterrupted run; a
            finished one computes only missing flows. A run with another identity (method, options,
            weights, format, max size, viz, source, version) is refused. False: start over.
        progress: tqdm progress bar (frames, with frames per second).

    Returns:
        :class:`VideoReport`. Unreadable frames are listed by index in the report (and in
        ``out / "estimate_report.json"``, which holds the totals of the whole run); the flows of every
        other pair are written.
    """
    from ..io import atomic_write_bytes
    from ..io.lock import OutputLock
    from ..io.strict_json import strict_dumps
    from ..io.video import FrameSource

    src, out, suffix = _check_request(FrameSource(source), fmt, max_size), Path(out), FLOW_FORMATS[fmt]
    _check_names(src, out, lambda i: out / f"{src.name(i)}{suffix}")
    m = build_method(method, checkpoint=checkpoint, iters=iters, device=device, **options)
    identity = run_identity(m, src, fmt, max_size, viz)
    if fmt == "reynolds-rgb":
        identity["reynolds_scale"] = _reynolds_request(m, reynolds_scale)
    out.mkdir(parents=True, exist_ok=True)
    with OutputLock(out / LOCK, "estimate run"):  # a second run on this --out is refused, not interleaved
        run = _Session(src, out, suffix, identity, _run_info(source, checkpoint, device), resume)
        report = VideoReport(out=out)
        report.skipped = sum(run.target(p).exists() and not run.missing(p) for p in range(len(src) - 1))
        last = _compute(src, out, m, run, report, fmt, viz, max_size, progress,
                        dict(reynolds_scale=reynolds_scale, flow_scale=flow_scale))
        if max(len(src), last + 1) < 2:
            raise FormatError(f"{src.path}: expected at least 2 frames, found {last + 1}")
        run.finish(report, last)
        if viz or preview or rerun:
            _draw_pictures(src, out, suffix, fmt, report, viz, preview, rerun, flow_scale)
        atomic_write_bytes(out / "estimate_report.json", strict_dumps(report.to_dict(), indent=2).encode())
        return report


def _compute(src, out: Path, m, run: "_Session", report: VideoReport, fmt: str, viz: bool, max_size, progress: bool,
             pictures: dict) -> int:
    """Stream the missing pairs of ``run`` through method ``m`` and write their outputs (``pictures``:
    ``_write_outputs``' scale keywords); returns the last frame index read."""
    bar = _progress(len(src), "frame", progress, initial=run.start)
    last = [run.start - 1]

    def frames():
        # a frame that belongs to no missing pair is not handed on: the gap breaks the chain, so
        # flows that exist after the resume point (e.g. beyond an unreadable frame) are not recomputed
        for index, frame in src.iter(start=run.start, errors="yield"):
            report.frames += 1
            last[0] = index
            bar.update(1)
            if frame is not None and not (run.missing(index - 1) or run.missing(index)):
                continue
            yield index, frame

    try:
        extras = ("v_o", "v_r") if fmt == "reynolds-rgb" else ()
        for index, frame, flow, *more in stream_flow(frames(), m, max_size=max_size, warm_start=run.warm_start,
                                                     on_clip=run.save, extras=extras):
            viz_path = out / "viz" / f"{src.name(index)}.png" if viz and fmt == "reynolds-rgb" else None
            _write_outputs(run.target(index), flow, frame, fmt, viz_path, *more, **pictures)
            report.written.append(run.target(index).name)
    finally:
        bar.close()
        report.seconds = time.perf_counter() - run.t0
    return last[0]


def _check_request(src, fmt: str, max_size: Optional[int]):
    """Refuse an unknown format, a ``max_size`` that is not a positive integer, and a source of fewer
    than 2 frames (a video whose container announces 0 frames is counted while it is read)."""
    if fmt not in FLOW_FORMATS:
        raise ShapeError(f"fmt: expected one of {', '.join(FLOW_FORMATS)}, found {fmt!r}")
    if max_size is not None and (isinstance(max_size, bool) or not isinstance(max_size, numbers.Integral) or max_size < 1):
        raise ShapeError(f"max_size: expected a positive number of pixels for the longer side, found {max_size!r}")
    if len(src) < 2 and (src.files is not None or len(src) == 1):
        raise FormatError(f"{src.path or src.files[0]}: expected at least 2 frames, found {len(src)}")
    return src


def _reynolds_request(method, scale) -> list:
    """``reynolds-rgb`` needs the ``reynolds`` method (its ``v_o`` / ``v_r``) and a valid ``scale``;
    returns the scale as it enters the run identity."""
    from ..classical.reynolds import ReynoldsFlow, reynolds_scales

    if not isinstance(method, ReynoldsFlow):
        found = getattr(method, "name", type(method).__name__)
        raise UnknownNameError(f"fmt 'reynolds-rgb' encodes the reynolds method, found method {found!r}")
    return list(reynolds_scales(scale))


def _draw_pictures(src, out: Path, suffix: str, fmt: str, report: VideoReport, viz: bool, preview: bool, rerun,
                   flow_scale: Optional[float]) -> None:
    """``--viz`` PNGs, ``--preview`` and ``--rerun``, drawn at the end from the run's flow files on one
    normalisation for the whole video (:mod:`motionflow.viz.sequence`)."""
    from ..viz.sequence import write_sequence_pictures

    drawn = write_sequence_pictures(
        _indexed(src, out, suffix), viz_dir=out / "viz" if viz and fmt != "reynolds-rgb" else None,
        preview=out / "preview.mp4" if preview else None, fps=src.fps or 10.0, max_flow=flow_scale,
        rerun=rerun, frames=src.iter(errors="yield") if rerun else None, images=fmt == "reynolds-rgb")
    report.preview, report.flow_scale = drawn.preview, drawn.scale


def flow_files(src, out: Path, suffix: str) -> list[Path]:
    """The flow files of ``src``'s run in ``out``, in frame order."""
    if src.files is not None:
        paths = [out / f"{src.name(i)}{suffix}" for i in range(len(src) - 1)]
    else:
        # a video's frame count is the container's estimate (0 when unknown): take every flow file
        # of the video's naming, ``frame_{index:06d}`` (zero-padded, so name order is frame order)
        paths = sorted(out.glob(f"frame_[0-9]*{suffix}"))
    return [p for p in paths if p.exists()]


def _indexed(src, out: Path, suffix: str) -> list:
    """``(frame index, path)`` of the run's flow files, in frame order."""
    if src.files is not None:
        index = {out / f"{src.name(i)}{suffix}": i for i in range(len(src) - 1)}
        return [(index[p], p) for p in flow_files(src, out, suffix)]
    return [(int(p.stem.rsplit("_", 1)[1]), p) for p in flow_files(src, out, suffix)]


def write_preview(src, out: Path, suffix: str, fps: float, images: bool = False,
                  flow_scale: Optional[float] = None) -> Optional[Path]:
    """Write ``out / "preview.mp4"`` from the flow files of ``out``: one flow picture per flow on one
    normalisation (``flow_scale`` px, default the video's, :mod:`motionflow.viz.sequence`), the colour
    wheel and the normalisation on each. With ``images=True`` the files are pictures (``reynolds-rgb``)
    and are written as they are."""
    from ..viz.sequence import write_sequence_pictures

    return write_sequence_pictures(_indexed(src, out, suffix), preview=out / "preview.mp4", fps=fps,
                                   max_flow=flow_scale, images=images).preview
