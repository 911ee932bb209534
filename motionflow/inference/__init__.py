"""Optical flow for clips and videos with any registered method.

Three modules:

* :mod:`~motionflow.inference.clips` -- the clip engine: :func:`estimate_flow` (in-memory frames ->
  :class:`~motionflow.types.FlowPrediction`), :func:`run_method`, :func:`stream_flow`, :func:`iter_clips`,
  :func:`as_frames`, :func:`build_method`, :func:`resize_frame`;
* :mod:`~motionflow.inference.video` -- the video-file job: :func:`process_video` (a video file, a
  folder of frames or image files -> one flow file per consecutive pair, streamed, resumable, with
  optional colour PNGs and an mp4 preview; ``motionflow estimate`` is a thin wrapper around it),
  :class:`VideoReport`, :data:`FLOW_FORMATS`, :func:`write_preview`;
* :mod:`~motionflow.inference.resume` -- the run manifest (what makes two runs the same) and the saved
  progress (with the warm start) that make a resumed run bit-identical to an uninterrupted one.

Names are imported lazily (``motionflow.lazy``): ``from motionflow.inference import estimate_flow`` works
and imports torch only then.
"""

from __future__ import annotations

from motionflow.lazy import lazy_exports

_LAZY = {
    "build_method": "clips",
    "as_frames": "clips",
    "iter_clips": "clips",
    "run_method": "clips",
    "estimate_flow": "clips",
    "stream_flow": "clips",
    "resize_frame": "clips",
    "VideoReport": "video",
    "process_video": "video",
    "write_preview": "video",
    "FLOW_FORMATS": "video",
}

__all__ = list(_LAZY)

__getattr__ = lazy_exports(__name__, _LAZY)
