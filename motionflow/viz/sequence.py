"""Pictures of a flow sequence on one normalisation: per-flow PNGs, the mp4 preview, a Rerun recording.

``motionflow estimate --viz / --preview / --rerun`` renders them at the end of the run from the flow
files it wrote (so a resumed run gets the pictures of an uninterrupted one), in two passes: the first
finds the video's normalisation (:func:`~motionflow.viz.color.flow_scale`: the largest per-flow 99th
percentile magnitude, unless one is given), the second draws every flow with it
(:func:`~motionflow.viz.color.flow_picture`: the wheel inset and ``max N px`` on each). A colour
therefore means the same motion in every PNG and in every frame of the preview.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional



@dataclass
class SequencePictures:
    """What :func:`write_sequence_pictures` wrote: the normalisation (px; None for pictures written as
    they are), the preview path (or None) and how many PNGs."""

    scale: Optional[float] = None
    preview: Optional[Path] = None
    pictures: int = 0


def _read(path: Path):
    from ..io import read_flow

    flow, valid = read_flow(path)
    return flow, valid


def write_sequence_pictures(items: list, *, viz_dir=None, preview=None, fps: float = 10.0,
                            max_flow: Optional[float] = None, percentile: float = 99.0, rerun=None,
                            frames: Optional[Iterable] = None, images: bool = False) -> SequencePictures:
    """Draw a sequence of flow files on one normalisation.

    Args:
        items: ``(index, path)`` of the flow files (any format :func:`motionflow.io.read_flow` reads), in
            frame order; with ``images=True`` the files are pictures (e.g. ReynoldsFlow+) used as they are.
        viz_dir: write ``viz_dir / f"{path.stem}.png"`` for each flow (the flow picture), or None.
        preview: write this mp4 (:class:`~motionflow.io.video.VideoWriter`: H.264 when PyAV is there), or None.
        fps: the preview's frame rate.
        max_flow: the normalisation in px; default :func:`~motionflow.viz.color.flow_scale` of the files
            with ``percentile``.
        rerun: write this Rerun recording (``.rrd``: the frames, the flow pictures, the wheel), or None.
        frames: ``(index, frame or None)`` in frame order (e.g. ``FrameSource.iter(errors="yield")``),
            for the recording.
    """
    from ..io import atomic_path, read_image, write_image
    from ..io.video import VideoWriter
    from .color import flow_picture, flow_scale

    result = SequencePictures()
    if not items:
        return result
    if not images:
        result.scale = float(max_flow) if max_flow is not None else flow_scale(
            (_read(p) for _, p in items), percentile=percentile)
    frame_iter = iter(frames) if frames is not None else None
    with ExitStack() as stack:
        writer = rec = None
        if preview is not None:  # closed before the temporary file replaces the preview
            writer = stack.enter_context(VideoWriter(stack.enter_context(atomic_path(Path(preview))), fps=fps))
        if rerun is not None:
            from .rerun_log import log_optical_flow, recording

            rec = stack.enter_context(recording(rerun, application="motionflow estimate"))
        for index, path in items:
            if images:
                picture = read_image(path)
            else:
                flow, valid = _read(path)
                picture = flow_picture(flow, max_flow=result.scale, valid=valid)
                if viz_dir is not None:
                    write_image(Path(viz_dir) / f"{Path(path).stem}.png", picture)
                    result.pictures += 1
            if writer is not None:
                writer.write(picture)
            if rec is not None:
                log_optical_flow(rec, index, _frame_at(frame_iter, index), picture=picture, max_flow=result.scale,
                                 entity="video/reynolds_plus" if images else "video/flow")
    result.preview = Path(preview) if preview is not None else None
    return result


def _frame_at(frames, index: int):
    """The frame with ``index`` from an ``(index, frame)`` iterator advanced in order (None if absent)."""
    if frames is None:
        return None
    for i, frame in frames:
        if i == index:
            return frame
        if i > index:
            return None
    return None
