"""MPI-Sintel (Butler et al., ECCV 2012): clips of T frames with their forward flows.

Download: http://sintel.is.tue.mpg.de/downloads (``MPI-Sintel-complete.zip``: training with flow,
occlusions and invalid masks; test frames only).

Expected tree::

    ROOT/
      training/
        clean/SCENE/frame_0001.png ...      (1-based, 4 digits)
        final/SCENE/frame_0001.png ...
        flow/SCENE/frame_0001.flo ...       (frame_i.flo = flow i -> i+1; the last frame has none)
        occlusions/SCENE/frame_0001.png ... (optional; 255 = occluded in frame i+1)
        invalid/SCENE/frame_0001.png ...    (optional; 255 = invalid)
      test/
        clean/SCENE/...  final/SCENE/...

Clips never cross a scene boundary (nor a gap in the frame numbers). ``clips="tile"`` covers each
scene with windows of ``frames`` frames that share their end frames, so every flow is scored exactly
once (the last window is end-aligned and its ``pair_index`` names only the pairs not scored before;
StreamFlow's ``SintelMultiframeEval`` with ``frames=4``); ``clips="centered"`` gives one window per
flow, centred on it as far as the scene allows, with ``pair_index`` naming that flow.
``clips="windows"`` reproduces VideoFlow's evaluation lists (:func:`strided_windows`):
``repeat_first`` copies of each scene's first frame are put before it, windows of ``frames`` frames
start every ``step`` frames, each scores the pairs at window positions ``scored_pairs`` (the pairs
the network estimates: BOF ``(1,)`` of 3 frames with step 1, MOF ``(1, 2, 3)`` of 5 with step 3),
and an end-aligned last window scores the pairs left over. The clip then holds the repeated frame
itself (``meta["frame_numbers"]`` repeats the number), so a method sees exactly the official window.
A scene shorter than ``frames`` gives one shorter clip; a one-frame scene gives none. ``valid`` is the .flo valid mask and not ``invalid``;
``occluded`` comes from ``occlusions/`` when every scored pair has its mask, else None.
The sample id is ``SCENE/frame_XXXX`` of the first scored frame.

Deviation: RAFT / VideoFlow / StreamFlow treat every Sintel pixel as valid; mmflow (and this loader)
remove the ``invalid/`` pixels. Pass ``use_invalid=False`` for the former.
"""

from __future__ import annotations

import re
from typing import Optional

import numpy as np

from ..errors import DatasetNotFoundError, ShapeError
from ..io import read_flow, read_image, read_sintel_mask
from ..types import FlowSample
from .base import (
    Dataset,
    centered_window,
    check_choice,
    check_flow_size,
    consecutive_runs,
    require_dir,
    stack_frames,
    tile_windows,
)

_FRAME = re.compile(r"^frame_(\d+)\.png$")
CLIP_MODES = ("tile", "centered", "windows")


def strided_windows(count: int, frames: int, step: int, repeat_first: int = 0, scored_pairs=None) -> list[tuple[list, tuple]]:
    """Windows over ``count`` frames as VideoFlow's evaluation lists build them.

    The frame list is ``[0] * repeat_first + [0, 1, ..., count - 1]``; windows of ``frames`` entries
    start at 0, ``step``, ``2 * step`` ... while they fit; each scores the pairs at window positions
    ``scored_pairs`` (default: every pair) whose two frames are consecutive real frames and not scored
    before. When pairs are left, a last window aligned to the end scores them (VideoFlow's
    ``remainder``). Returns ``(frame indices of the window, scored pair positions in it)``; a list
    shorter than ``frames`` gives one window of all of it.

    VideoFlow BOF (``datasets_3frames``): ``frames=3, step=1, repeat_first=1, scored_pairs=(1,)``;
    MOF (``MpiSintelTrain``): ``frames=5, step=3, repeat_first=1, scored_pairs=(1, 2, 3)``; StreamFlow
    (``SintelMultiframeEval``) ``frames=4, step=3``: the same as :func:`~motionflow.datasets.base.tile_windows`.
    """
    if count < 2:
        return []
    index = [0] * int(repeat_first) + list(range(count))
    size = min(int(frames), len(index))
    producible = tuple(range(size - 1)) if scored_pairs is None else tuple(p for p in scored_pairs if p < size - 1)
    done: set = set()
    out = []

    def take(start: int) -> None:
        window = index[start : start + size]
        pairs = tuple(p for p in producible if window[p + 1] == window[p] + 1 and window[p] not in done)
        if pairs:
            done.update(window[p] for p in pairs)
            out.append((window, pairs))

    for start in range(0, len(index) - size + 1, max(1, int(step))):
        take(start)
    if len(done) < count - 1:
        take(len(index) - size)
    if len(done) < count - 1:
        raise ShapeError(
            f"strided_windows: windows of {frames} frames scoring positions {scored_pairs} leave pairs "
            f"{sorted(set(range(count - 1)) - done)} of a {count}-frame run unscored"
        )
    return out


class Sintel(Dataset):
    """MPI-Sintel loader.

    Args:
        root: the Sintel root (holding ``training/`` and/or ``test/``).
        split: ``"training"`` or ``"test"``.
        pass_name: ``"clean"`` or ``"final"`` (:func:`motionflow.datasets.get_dataset` also accepts
            the option as ``pass``, the CLI's ``--pass``).
        frames: clip length T >= 2.
        clips: ``"tile"``, ``"centered"`` or ``"windows"`` (see the module docstring).
        step, repeat_first, scored_pairs: the ``"windows"`` layout (:func:`strided_windows`; default
            step ``frames - 1``, no repeated frame, every pair of the window scored).
        scenes: optional list of scene names to keep.
        use_invalid: remove ``invalid/`` pixels from ``valid`` (default True).
        max_samples: keep the first N clips.
    """

    name = "sintel"
    kind = "optical"
    splits = ("training", "test")

    def __init__(
        self,
        root,
        split: str = "training",
        pass_name: str = "clean",
        frames: int = 2,
        clips: str = "tile",
        scenes: Optional[list] = None,
        use_invalid: bool = True,
        max_samples: Optional[int] = None,
        step: Optional[int] = None,
        repeat_first: int = 0,
        scored_pairs: Optional[tuple] = None,
    ):
        check_choice("sintel pass", pass_name, ("clean", "final"))
        check_choice("sintel clips", clips, CLIP_MODES)
        if int(frames) < 2:
            raise ShapeError(f"sintel frames: expected T >= 2, found {frames}")
        if clips != "windows" and (step is not None or repeat_first or scored_pairs is not None):
            raise ShapeError(f"sintel step / repeat_first / scored_pairs: expected clips='windows', found clips={clips!r}")
        if scored_pairs is not None and any(not 0 <= int(p) < int(frames) - 1 for p in scored_pairs):
            raise ShapeError(f"sintel scored_pairs: expected pair positions in 0..{int(frames) - 2}, found {tuple(scored_pairs)}")
        self.pass_name, self.frames, self.clips = pass_name, int(frames), clips
        self.step = int(frames) - 1 if step is None else int(step)
        if self.step < 1:
            raise ShapeError(f"sintel step: expected >= 1, found {step}")
        self.repeat_first = int(repeat_first)
        self.scored_pairs = None if scored_pairs is None else tuple(int(p) for p in scored_pairs)
        self.scenes_filter, self.use_invalid = scenes, use_invalid
        super().__init__(root, split, max_samples)

    def _index(self) -> list[dict]:
        root = require_dir(self.root, "sintel root")
        split_dir = root / self.split
        img_root = split_dir / self.pass_name
        require_dir(img_root, f"sintel {self.split}/{self.pass_name}", [img_root])
        flow_root = split_dir / "flow"
        has_gt = self.split == "training"
        if has_gt:
            require_dir(flow_root, "sintel training flow", [flow_root])
        scenes = sorted(p.name for p in img_root.iterdir() if p.is_dir())
        if self.scenes_filter is not None:
            unknown = sorted(set(self.scenes_filter) - set(scenes))
            if unknown:
                raise DatasetNotFoundError(f"sintel scenes: {unknown} not found under {img_root}; found {scenes}")
            scenes = [s for s in scenes if s in set(self.scenes_filter)]
        if not scenes:
            raise DatasetNotFoundError(f"sintel: expected scene folders under {img_root}, found none")
        records = []
        for scene in scenes:
            numbers = sorted(
                int(m.group(1)) for m in (_FRAME.match(p.name) for p in (img_root / scene).iterdir()) if m
            )
            width = 4
            for run in consecutive_runs(numbers):
                for nums, pairs in self._windows(run):
                    scored = [nums[p] for p in pairs]
                    rec = {
                        "id": f"{scene}/frame_{scored[0]:0{width}d}",
                        "scene": scene,
                        "numbers": nums,
                        "pair_index": pairs,
                        "images": [img_root / scene / f"frame_{n:0{width}d}.png" for n in nums],
                    }
                    if has_gt:
                        rec["flows"] = [flow_root / scene / f"frame_{n:0{width}d}.flo" for n in scored]
                        missing = [str(p) for p in rec["flows"] if not p.is_file()]
                        if missing:
                            raise DatasetNotFoundError(
                                f"sintel {rec['id']}: expected the flow files {missing} (flow i -> i+1 for "
                                f"every frame but the last of {scene}), found none"
                            )
                        rec["occlusions"] = [split_dir / "occlusions" / scene / f"frame_{n:0{width}d}.png" for n in scored]
                        rec["invalid"] = [split_dir / "invalid" / scene / f"frame_{n:0{width}d}.png" for n in scored]
                    records.append(rec)
        return records

    def _windows(self, run: list[int]) -> list[tuple[list, tuple]]:
        """``(frame numbers of the clip, scored pair positions)`` covering the pairs of one run."""
        if self.clips == "tile":
            return [(run[start : start + self.frames], pairs) for start, pairs in tile_windows(run, self.frames)]
        if self.clips == "windows":
            return [([run[i] for i in idx], pairs) for idx, pairs in
                    strided_windows(len(run), self.frames, self.step, self.repeat_first, self.scored_pairs)]
        out = []
        n = len(run)
        for p in range(n - 1):
            start = centered_window(p, self.frames, 0, n - 1)
            out.append((run[start : start + self.frames], (p - start,)))
        return out

    def _load(self, rec: dict) -> FlowSample:
        images = [read_image(p) for p in rec["images"]]
        frames = stack_frames(images, rec["images"])
        h, w = frames.shape[-2:]
        meta = {
            "dataset": self.name,
            "split": self.split,
            "pass": self.pass_name,
            "scene": rec["scene"],
            "frame_numbers": list(rec["numbers"]),
            "image_paths": [str(p) for p in rec["images"]],
        }
        if "flows" not in rec:
            return FlowSample(rec["id"], frames, pair_index=tuple(rec["pair_index"]), meta=meta)
        flows, valids = [], []
        for fp, ip in zip(rec["flows"], rec["invalid"]):
            flow, valid = read_flow(fp)
            check_flow_size(flow, fp, h, w)
            if self.use_invalid and ip.is_file():
                valid = valid & ~read_sintel_mask(ip)
            flows.append(flow.transpose(2, 0, 1))
            valids.append(valid)
        occluded = None
        if all(p.is_file() for p in rec["occlusions"]):
            occluded = np.stack([read_sintel_mask(p) for p in rec["occlusions"]])
        meta["flow_paths"] = [str(p) for p in rec["flows"]]
        return FlowSample(
            rec["id"],
            frames,
            flow=np.stack(flows).astype(np.float32),
            valid=np.stack(valids),
            occluded=occluded,
            pair_index=tuple(rec["pair_index"]),
            meta=meta,
        )
