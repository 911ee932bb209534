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
once (the last window is end-aligned and its ``pair_index`` names only the pairs not scored before);
``clips="centered"`` gives one window per flow, centred on it, with ``pair_index`` naming that flow
(VideoFlow's Sintel protocol for multi-frame models). A scene shorter than ``frames`` gives one
shorter clip; a one-frame scene gives none. ``valid`` is the .flo valid mask and not ``invalid``;
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


class Sintel(Dataset):
    """MPI-Sintel loader.

    Args:
        root: the Sintel root (holding ``training/`` and/or ``test/``).
        split: ``"training"`` or ``"test"``.
        pass_name: ``"clean"`` or ``"final"`` (:func:`motionflow.datasets.get_dataset` also accepts
            the option as ``pass``, the CLI's ``--pass``).
        frames: clip length T >= 2.
        clips: ``"tile"`` or ``"centered"`` (see the module docstring).
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
    ):
        check_choice("sintel pass", pass_name, ("clean", "final"))
        check_choice("sintel clips", clips, ("tile", "centered"))
        if int(frames) < 2:
            raise ShapeError(f"sintel frames: expected T >= 2, found {frames}")
        self.pass_name, self.frames, self.clips = pass_name, int(frames), clips
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
                for start, pairs in self._windows(run):
                    nums = run[start : start + self.frames]
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

    def _windows(self, run: list[int]) -> list[tuple[int, tuple]]:
        if self.clips == "tile":
            return tile_windows(run, self.frames)
        out = []
        n = len(run)
        for p in range(n - 1):
            start = centered_window(p, self.frames, 0, n - 1)
            out.append((start, (p - start,)))
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
