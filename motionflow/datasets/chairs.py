"""FlyingChairs (Dosovitskiy et al., ICCV 2015): image pairs with flow.

Download: https://lmb.informatik.uni-freiburg.de/resources/datasets/FlyingChairs.en.html
(``FlyingChairs.zip`` and the split file ``FlyingChairs_train_val.txt``).

Expected tree (official naming)::

    ROOT/
      FlyingChairs_train_val.txt      one line per pair: 1 = train, 2 = val (22,232 / 640)
      data/00001_img1.ppm  00001_img2.ppm  00001_flow.flo ...

The flownet2 repository's naming ``0000001-img0.ppm``, ``0000001-img1.ppm``, ``0000001-gt.flo`` is
accepted too, in ``ROOT/data`` or in ``ROOT`` itself. Line k of the split file (1-based) belongs to
pair number k. The sample id is the pair number as it appears in the file names.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import DatasetNotFoundError, FormatError
from ..io import read_flow, read_image
from ..types import FlowSample
from .base import Dataset, check_flow_size, require_dir, stack_frames

_OFFICIAL = re.compile(r"^(\d+)_img1\.ppm$")
_FLOWNET2 = re.compile(r"^(\d+)-img0\.ppm$")


class FlyingChairs(Dataset):
    """FlyingChairs loader.

    Args:
        root: the dataset root (see the module docstring).
        split: ``"train"``, ``"val"`` (both need ``FlyingChairs_train_val.txt``) or ``"all"``.
        split_file: path of the split file (default ``ROOT/FlyingChairs_train_val.txt``).
        max_samples: keep the first N pairs.
    """

    name = "chairs"
    kind = "optical"
    splits = ("train", "val", "all")

    def __init__(self, root, split: str = "val", split_file=None, max_samples: Optional[int] = None):
        self.split_file = split_file
        super().__init__(root, split, max_samples)

    def _index(self) -> list[dict]:
        root = require_dir(self.root, "chairs root")
        data = root / "data" if (root / "data").is_dir() else root
        pairs = []
        for p in data.iterdir():
            m = _OFFICIAL.match(p.name)
            if m:
                s = m.group(1)
                pairs.append((int(s), s, [p, data / f"{s}_img2.ppm"], data / f"{s}_flow.flo"))
                continue
            m = _FLOWNET2.match(p.name)
            if m:
                s = m.group(1)
                pairs.append((int(s), s, [p, data / f"{s}-img1.ppm"], data / f"{s}-gt.flo"))
        if not pairs:
            raise DatasetNotFoundError(
                f"chairs: expected XXXXX_img1.ppm (or NNNNNNN-img0.ppm) files, looked in {data}, found none"
            )
        pairs.sort()
        if self.split != "all":
            split_file = Path(self.split_file) if self.split_file else root / "FlyingChairs_train_val.txt"
            if not split_file.is_file():
                raise DatasetNotFoundError(
                    f"chairs split {self.split!r}: expected the split file FlyingChairs_train_val.txt, "
                    f"looked for: {split_file} (use split='all' to read every pair)"
                )
            labels = split_file.read_text().split()
            want = "1" if self.split == "train" else "2"
            kept = []
            for number, stem, images, flow in pairs:
                if number < 1 or number > len(labels):
                    raise FormatError(
                        f"{split_file}: expected a line for pair {stem}, found only {len(labels)} lines"
                    )
                if labels[number - 1] == want:
                    kept.append((number, stem, images, flow))
            pairs = kept
        records = []
        for _, stem, images, flow in pairs:
            missing = [str(p) for p in images + [flow] if not p.is_file()]
            if missing:
                raise DatasetNotFoundError(f"chairs pair {stem}: expected files {missing}, found none")
            records.append({"id": stem, "images": images, "flow": flow})
        return records

    def _load(self, rec: dict) -> FlowSample:
        frames = stack_frames([read_image(p) for p in rec["images"]], rec["images"])
        flow, valid = read_flow(rec["flow"])
        check_flow_size(flow, rec["flow"], *frames.shape[-2:])
        return FlowSample(
            rec["id"],
            frames,
            flow=flow.transpose(2, 0, 1)[None].astype(np.float32),
            valid=valid[None],
            meta={"dataset": self.name, "split": self.split, "image_paths": [str(p) for p in rec["images"]],
                  "flow_path": str(rec["flow"])},
        )
