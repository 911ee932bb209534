"""The clip engine: run any optical-flow method over frames, clip by clip.

A method object (``motionflow.registry``) is all the engine needs: it is called on clips of
``method.clip_length`` frames overlapping by one frame, so every consecutive pair is estimated exactly
once, and the flows are stitched into one per pair (:func:`iter_clips`). Methods do their
model-specific windowing (and padding to their stride) inside a clip. Methods with
``accepts_prev_flow = True`` get the previous clip's last flow as a warm start.

* :func:`estimate_flow` / :func:`run_method` -- in-memory frames -> :class:`FlowPrediction`;
* :func:`stream_flow` -- ``(index, frame)`` pairs -> one flow per pair, in bounded memory (used by
  :func:`motionflow.inference.video.process_video`).
"""

from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Iterator, Optional

import numpy as np
import torch

from ..errors import ShapeError
from ..types import FlowPrediction

__all__ = [
    "build_method",
    "as_frames",
    "iter_clips",
    "run_method",
    "estimate_flow",
    "stream_flow",
    "resize_frame",
]


# ----------------------------------------------------------------------------------------- methods
def build_method(method: Any = "classical", checkpoint=None, iters=None, device=None, **options):
    """A method object: ``method`` itself if it is callable, else the registered name built with
    ``checkpoint``, ``iters``, ``device`` (only those given) and ``options``."""
    if callable(method) and not isinstance(method, str):
        return method
    if not isinstance(method, str):
        raise ShapeError(f"method: expected a registered name or a method object, found {type(method).__name__}")
    from ..registry import get_optical_flow_method

    kwargs = dict(options)
    for key, value in (("checkpoint", checkpoint), ("iters", iters), ("device", device)):
        if value is not None:
            kwargs[key] = value
    return get_optical_flow_method(method, **kwargs)


def as_frames(frames) -> tuple[torch.Tensor, bool]:
    """Normalise user frames to a float32 tensor ``(B, T, 3, H, W)`` in [0, 255].

    Accepts ``(T, 3, H, W)`` or ``(B, T, 3, H, W)`` numpy arrays or torch tensors (uint8 or float in
    [0, 255]), or a list of ``(H, W, 3)`` RGB arrays. Returns ``(frames, batched)`` where ``batched``
    says whether the input had a batch axis.
    """
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise ShapeError("frames: expected at least 2 frames, found an empty list")
        arrs = [np.asarray(f) for f in frames]
        for i, a in enumerate(arrs):
            if a.ndim != 3 or a.shape[2] != 3:
                raise ShapeError(f"frames[{i}]: expected an (H, W, 3) RGB image, found shape {a.shape}")
            if a.shape != arrs[0].shape:
                raise ShapeError(f"frames[{i}]: expected the size of frames[0] {arrs[0].shape}, found {a.shape}")
        x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2)
    elif isinstance(frames, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(frames))
    elif isinstance(frames, torch.Tensor):
        x = frames
    else:
        raise ShapeError(
            f"frames: expected a numpy array, a torch tensor or a list of images, found {type(frames).__name__}"
        )
    batched = x.ndim == 5
    if x.ndim == 4:
        x = x[None]
    if x.ndim != 5 or x.shape[2] != 3:
        raise ShapeError(f"frames: expected (T, 3, H, W) or (B, T, 3, H, W), found shape {tuple(x.shape)}")
    if x.shape[1] < 2:
        raise ShapeError(f"frames: expected at least 2 frames (T >= 2), found T={x.shape[1]}")
    if x.dtype == torch.bool or x.dtype.is_complex:
        raise ShapeError(f"frames: expected uint8 or float pixels, found {x.dtype}")
    return x.to(torch.float32), batched


def iter_clips(num_frames: int, clip_length: int) -> list[tuple[int, int]]:
    """Clips ``(start, stop)`` (frame slices) of ``clip_length`` frames overlapping by one frame.

    Clip k covers frames ``[start, stop)`` and yields flows for pairs ``start .. stop-2``; together
    the clips cover every pair ``0 .. T-2`` exactly once. The last clip is shorter when the frames run
    out (it is never padded with repeated frames).
    """
    if clip_length < 2:
        raise ShapeError(f"clip_length: expected >= 2, found {clip_length}")
    clips, start = [], 0
    while start < num_frames - 1:
        stop = min(start + clip_length, num_frames)
        clips.append((start, stop))
        start = stop - 1
    return clips


def _call(method, clip: torch.Tensor, prev_flow=None) -> FlowPrediction:
    """Call ``method`` on a clip; methods with ``accepts_prev_flow = True`` (``classical``) also get
    the last flow of the previous clip ``(B, 2, H, W)`` as a temporal warm start."""
    if prev_flow is not None and getattr(method, "accepts_prev_flow", False):
        pred = method(clip, prev_flow=prev_flow)
    else:
        pred = method(clip)
    if not isinstance(pred, FlowPrediction):
        raise ShapeError(f"method {getattr(method, 'name', method)!r}: expected a FlowPrediction, found {type(pred).__name__}")
    b, t, _, h, w = clip.shape
    if tuple(pred.flow.shape) != (b, t - 1, 2, h, w):
        raise ShapeError(
            f"method {getattr(method, 'name', method)!r}: expected flow of shape {(b, t - 1, 2, h, w)}, "
            f"found {tuple(pred.flow.shape)}"
        )
    return pred


def run_method(method, frames: torch.Tensor, progress: bool = False) -> FlowPrediction:
    """Run ``method`` over ``frames`` ``(B, T, 3, H, W)`` clip by clip and stitch the flows."""
    clip_length = int(getattr(method, "clip_length", 2) or 2)
    clips = iter_clips(frames.shape[1], clip_length)
    flows, backs = [], []
    has_back = True
    bar = _progress(len(clips), "clips", progress)
    prev = None
    for start, stop in clips:
        pred = _call(method, frames[:, start:stop], prev)
        prev = torch.as_tensor(pred.flow)[:, -1]
        flows.append(torch.as_tensor(pred.flow).float())
        if pred.backward is None:
            has_back = False
        else:
            backs.append(torch.as_tensor(pred.backward).float())
        bar.update(1)
    bar.close()
    return FlowPrediction(
        flow=torch.cat(flows, 1),
        backward=torch.cat(backs, 1) if has_back and backs else None,
        meta={"method": getattr(method, "name", type(method).__name__), "clips": clips},
    )


def estimate_flow(frames, method: Any = "classical", checkpoint=None, iters=None, device=None, **options) -> FlowPrediction:
    """Optical flow between every pair of consecutive frames.

    Args:
        frames: ``(T, 3, H, W)`` or ``(B, T, 3, H, W)`` numpy array / torch tensor (uint8 or float in
            [0, 255]), or a list of ``(H, W, 3)`` RGB arrays.
        method: a registered name (``"classical"``, ``"raft"``, ``"videoflow-mof"``...) or a method object.
        checkpoint, iters, device: passed to the method factory when given.
        **options: further factory options (e.g. ``preset="accurate"`` for ``classical``).

    Returns:
        :class:`FlowPrediction` with ``flow`` ``(T-1, 2, H, W)`` (or ``(B, T-1, 2, H, W)`` for batched
        input), float32 on the CPU, and ``backward`` likewise where the method has it.
    """
    x, batched = as_frames(frames)
    m = build_method(method, checkpoint=checkpoint, iters=iters, device=device, **options)
    start = time.perf_counter()
    pred = run_method(m, x)
    pred.flow = pred.flow.detach().cpu()
    if pred.backward is not None:
        pred.backward = pred.backward.detach().cpu()
    if not batched:
        pred.flow = pred.flow[0]
        pred.backward = None if pred.backward is None else pred.backward[0]
    pred.meta["seconds"] = time.perf_counter() - start
    return pred


# --------------------------------------------------------------------------------------- streaming
def resize_frame(frame: np.ndarray, max_size: Optional[int]) -> np.ndarray:
    """Downscale ``(H, W, 3)`` so that its longer side is at most ``max_size`` (area filter)."""
    if not max_size:
        return frame
    h, w = frame.shape[:2]
    scale = max_size / max(h, w)
    if scale >= 1:
        return frame
    from ..errors import require_cv2

    cv2 = require_cv2()
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def _upscale_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(2, h, w)`` flow -> ``(2, H, W)`` (:func:`motionflow.ops.upsample.resize_flow`, bilinear)."""
    if tuple(flow.shape[-2:]) == tuple(size):
        return flow
    from ..ops.upsample import resize_flow

    return resize_flow(flow[None], size)[0]


def stream_flow(
    frames: Iterable[tuple[int, Optional[np.ndarray]]],
    method,
    max_size: Optional[int] = None,
    on_bad_frame=None,
    warm_start: Optional[torch.Tensor] = None,
    on_clip=None,
    extras: tuple = (),
) -> Iterator[tuple]:
    """Stream flows from ``(index, frame)`` pairs (e.g. :func:`motionflow.io.video.iter_frames` with
    ``errors="yield"``).

    Frames are buffered in clips of ``method.clip_length`` overlapping by one frame. A frame given as
    ``None`` (unreadable), or one not consecutive with the previous (a gap), breaks the chain: the
    frames buffered before it are processed, ``on_bad_frame(index)`` is called, and no flow is made
    for the pairs that touch it.

    Args:
        warm_start: ``(1, 2, h, w)`` flow at processing resolution that the first clip gets as its
            warm start (what ``on_clip`` reported when an interrupted run is resumed), or None.
        on_clip: ``on_clip(next, warm)`` is called once the flows of a full clip have all been
            consumed: ``next`` is the index of the clip's last frame (the first of the next clip) and
            ``warm`` the ``(1, 2, h, w)`` warm start the next clip gets (None for methods without
            ``accepts_prev_flow``). Restarting the stream at frame ``next`` with ``warm_start=warm``
            gives the same flows as going on.
        extras: names of further per-pair flow fields in the prediction's ``meta`` (tensors shaped
            like ``flow``, e.g. ``reynolds``' ``("v_o", "v_r")``); each is resized like the flow.

    Yields:
        ``(index, frame, flow)``: ``flow`` ``(H, W, 2)`` float32 from frame ``index`` to ``index + 1``
        at the frame's original resolution, and ``frame`` the (original) RGB frame ``index``. With
        ``extras``, ``(index, frame, flow, {name: (H, W, 2) array})``.
    """
    clip_length = int(getattr(method, "clip_length", 2) or 2)
    warm_used = getattr(method, "accepts_prev_flow", False)
    buffer: list[tuple[int, np.ndarray, np.ndarray]] = []  # (index, original, resized)
    prev = warm_start  # last flow of the previous clip (warm start), None after a chain break

    def flush(keep_last: bool):
        nonlocal buffer, prev
        if len(buffer) >= 2:
            clip = torch.from_numpy(np.stack([r for _, _, r in buffer])).permute(0, 3, 1, 2)[None].float()
            pred = _call(method, clip, prev)
            flows = pred.flow[0].detach().float().cpu()
            more = {}
            for name in extras:
                if name not in pred.meta:
                    raise ShapeError(f"method {getattr(method, 'name', method)!r}: expected {name!r} in its meta, found none")
                more[name] = torch.as_tensor(pred.meta[name])[0].detach().float().cpu()
            prev = flows[-1:] if keep_last else None
            for k in range(len(buffer) - 1):
                index, original, _ = buffer[k]
                f = _upscale_flow(flows[k], original.shape[:2])
                if not extras:
                    yield index, original, f.permute(1, 2, 0).numpy()
                    continue
                sized = {n: _upscale_flow(v[k], original.shape[:2]).permute(1, 2, 0).numpy() for n, v in more.items()}
                yield index, original, f.permute(1, 2, 0).numpy(), sized
            if keep_last and on_clip is not None:
                on_clip(buffer[-1][0], prev if warm_used else None)
        else:
            prev = None
        buffer = buffer[-1:] if keep_last else []

    for index, frame in frames:
        if frame is None:
            yield from flush(keep_last=False)
            if on_bad_frame is not None:
                on_bad_frame(index)
            continue
        if buffer and index != buffer[-1][0] + 1:
            yield from flush(keep_last=False)
        buffer.append((index, frame, resize_frame(frame, max_size)))
        if len(buffer) == clip_length:
            yield from flush(keep_last=True)
    yield from flush(keep_last=False)


def _progress(total, unit: str, enabled: bool, initial: int = 0):
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, initial=initial, disable=not enabled, dynamic_ncols=True, file=sys.stderr)
