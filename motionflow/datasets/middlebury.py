"""Middlebury optical flow (Baker et al., IJCV 2011).

Download: https://vision.middlebury.edu/flow/data/ (``other-color-twoframes.zip`` or the 8-frame
``other-color-allframes.zip``, ``other-gt-flow.zip``, ``eval-color-twoframes.zip``).

Expected tree::

    ROOT/
      other-data/SCENE/frame10.png  frame11.png   (8-frame sets: frame07 .. frame14)
      other-gt-flow/SCENE/flow10.flo              (flow 10 -> 11; |v| > 1e9 = unknown)
      eval-data/SCENE/frame10.png  frame11.png    (the "test" split, no GT)

Split ``"training"`` reads the scenes of ``other-data`` that have ``other-gt-flow``; ``"test"``
reads ``eval-data``. With ``frames=T`` the clip is centred on 10 -> 11 like KITTI's (needs the
all-frames zip). The sample id is ``SCENE``.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import DatasetNotFoundError, ShapeError
from ..io import read_flow, read_image
from ..types import FlowSample
from .base import Dataset, centered_window, check_flow_size, require_dir, stack_frames


class Middlebury(Dataset):
    """Middlebury loader: ``split`` ``"training"`` (other-data + other-gt-flow) or ``"test"`` (eval-data)."""

    name = "middlebury"
    kind = "optical"
    splits = ("training", "test")

    def __init__(self, root, split: str = "training", frames: int = 2, max_samples: Optional[int] = None):
        if int(frames) < 2:
            raise ShapeError(f"middlebury frames: expected T >= 2, found {frames}")
        self.frames = int(frames)
        super().__init__(root, split, max_samples)

    def _index(self) -> list[dict]:
        root = require_dir(self.root, "middlebury root")
        img_root = root / ("other-data" if self.split == "training" else "eval-data")
        require_dir(img_root, f"middlebury {self.split} frames", [img_root])
        gt_root = root / "other-gt-flow"
        if self.split == "training":
            require_dir(gt_root, "middlebury ground truth", [gt_root])
        start = centered_window(10, self.frames, 7, 14)
        numbers = list(range(start, start + self.frames))
        records = []
        for scene_dir in sorted(p for p in img_root.iterdir() if p.is_dir()):
            scene = scene_dir.name
            flow = gt_root / scene / "flow10.flo"
            if self.split == "training" and not flow.is_file():
                continue  # other-data has scenes without public GT
            images = [scene_dir / f"frame{n:02d}.png" for n in numbers]
            missing = [str(p) for p in images if not p.is_file()]
            if missing:
                raise DatasetNotFoundError(f"middlebury {scene}: expected frames {missing}, found none")
            rec = {"id": scene, "images": images, "numbers": numbers, "pair": numbers.index(10)}
            if self.split == "training":
                rec["flow"] = flow
            records.append(rec)
        if not records:
            raise DatasetNotFoundError(f"middlebury: expected scene folders with frames in {img_root}, found none")
        return records

    def _load(self, rec: dict) -> FlowSample:
        frames = stack_frames([read_image(p) for p in rec["images"]], rec["images"])
        meta = {"dataset": self.name, "split": self.split, "frame_numbers": rec["numbers"],
                "image_paths": [str(p) for p in rec["images"]]}
        if "flow" not in rec:
            return FlowSample(rec["id"], frames, pair_index=(rec["pair"],), meta=meta)
        flow, valid = read_flow(rec["flow"])
        check_flow_size(flow, rec["flow"], *frames.shape[-2:])
        flow = np.where(valid[..., None], flow, 0.0).astype(np.float32)
        meta["flow_path"] = str(rec["flow"])
        return FlowSample(rec["id"], frames, flow=flow.transpose(2, 0, 1)[None], valid=valid[None],
                          pair_index=(rec["pair"],), meta=meta)
