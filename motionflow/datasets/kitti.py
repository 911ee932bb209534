"""KITTI optical flow 2015 (Menze and Geiger, CVPR 2015) and 2012 (Geiger et al., CVPR 2012).

Download: https://www.cvlibs.net/datasets/kitti/eval_scene_flow.php?benchmark=flow
(``data_scene_flow.zip``; multi-frame clips need ``data_scene_flow_multiview.zip``) and
https://www.cvlibs.net/datasets/kitti/eval_stereo_flow.php?benchmark=flow (2012,
``data_stereo_flow.zip`` and ``data_stereo_flow_multiview.zip``).

Expected tree (2015; 2012 has ``colored_0`` in place of ``image_2``)::

    ROOT/
      training/
        image_2/000000_10.png  000000_11.png ...
        flow_occ/000000_10.png ...    (16-bit KITTI PNG: all pixels with GT)
        flow_noc/000000_10.png ...    (optional: non-occluded pixels only)
      testing/
        image_2/000000_10.png  000000_11.png ...

For clips of T > 2 frames the other frames ``XXXXXX_NN.png`` (NN = 00..20) come from the multiview
zip, found in this order: merged into the same ``image_2`` folder, under ``multiview_root`` (the
multiview zip's root, with the same ``training``/``testing`` layout), or unpacked under the root as
``ROOT/data_scene_flow_multiview/`` (2012: ``ROOT/data_stereo_flow_multiview/``). The annotated pair
``_10 -> _11`` sits at clip position ``pair_position`` (default ``(T-1)//2``, centred: T=3 gives 09, 10,
11, VideoFlow BOF's window; T=5 gives 08 .. 12, VideoFlow MOF's; StreamFlow's ``KITTIMultiFrameEval``
takes 08 .. 11 with the pair last: ``frames=4, pair_position=2``), and ``pair_index`` names it. A
missing multiview frame is refused with what to download (``missing_frames="refuse"``), or, with
``missing_frames="repeat"``, replaced by the nearest annotated frame (``_10`` before, ``_11`` after);
``meta["repeated_frames"]`` then lists the replaced numbers.

GT: ``valid`` = flow_occ valid; ``occluded`` = flow_occ valid and not flow_noc valid (ptlflow), or
None without ``flow_noc``; ``meta["foreground"]`` = ``obj_map`` > 0 (2015 ``training/obj_map/``, the
devkit's Fl-fg / Fl-bg split) when that folder exists. The sample id is ``XXXXXX_10``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import DatasetNotFoundError, FormatError, ShapeError
from ..io import read_flow, read_image
from ..types import FlowSample
from .base import Dataset, check_choice, check_flow_size, require_dir, stack_frames

_NAME = re.compile(r"^(\d{6})_10\.png$")


class KITTIFlow(Dataset):
    """KITTI flow loader (2015 by default).

    Args:
        root: the KITTI root holding ``training/`` and ``testing/``.
        split: ``"training"`` or ``"testing"``.
        frames: clip length T >= 2 (T > 2 needs the multiview frames).
        pair_position: clip position of the annotated pair (default ``(T-1)//2``).
        multiview_root: root of the multiview zip when its frames are not merged into ``root``.
        missing_frames: ``"refuse"`` (default) or ``"repeat"`` (see the module docstring).
        max_samples: keep the first N scenes.
    """

    name = "kitti2015"
    kind = "optical"
    splits = ("training", "testing")
    image_dir = "image_2"
    multiview_dir = "data_scene_flow_multiview"
    multiview_zip = "data_scene_flow_multiview.zip (https://www.cvlibs.net/datasets/kitti/eval_scene_flow.php?benchmark=flow)"
    first_frame, last_frame, gt_frame = 0, 20, 10

    def __init__(
        self,
        root,
        split: str = "training",
        frames: int = 2,
        multiview_root=None,
        max_samples: Optional[int] = None,
        pair_position: Optional[int] = None,
        missing_frames: str = "refuse",
    ):
        if int(frames) < 2:
            raise ShapeError(f"{self.name} frames: expected T >= 2, found {frames}")
        self.frames = int(frames)
        self.pair_position = (self.frames - 1) // 2 if pair_position is None else int(pair_position)
        if not 0 <= self.pair_position <= self.frames - 2:
            raise ShapeError(f"{self.name} pair_position: expected 0..{self.frames - 2} for {self.frames} frames, found {pair_position}")
        check_choice(f"{self.name} missing_frames", missing_frames, ("refuse", "repeat"))
        self.missing_frames = missing_frames
        self.multiview_root = Path(multiview_root) if multiview_root is not None else None
        super().__init__(root, split, max_samples)

    def _frame_numbers(self) -> list[int]:
        start = self.gt_frame - self.pair_position
        numbers = list(range(start, start + self.frames))
        if numbers[0] < self.first_frame or numbers[-1] > self.last_frame:
            raise ShapeError(f"{self.name}: frames {numbers[0]:02d}..{numbers[-1]:02d} leave the recorded 00..20")
        return numbers

    def _multiview_dirs(self, root: Path) -> list[Path]:
        dirs = []
        if self.multiview_root is not None:
            dirs.append(require_dir(self.multiview_root / self.split / self.image_dir, f"{self.name} multiview images"))
        unpacked = root / self.multiview_dir / self.split / self.image_dir
        if unpacked.is_dir():
            dirs.append(unpacked)
        return dirs

    def _find_frame(self, stem: str, n: int, dirs: list[Path]) -> tuple[Path, bool]:
        """The file of frame ``n`` of scene ``stem`` and whether it is a repeated annotated frame."""
        name = f"{stem}_{n:02d}.png"
        cands = [d / name for d in dirs]
        found = next((c for c in cands if c.is_file()), None)
        if found is not None:
            return found, False
        if n in (self.gt_frame, self.gt_frame + 1) or self.missing_frames == "refuse":
            hint = "" if n in (self.gt_frame, self.gt_frame + 1) else (
                f" (frames other than _10/_11 come from the multiview zip {self.multiview_zip}: merge it into "
                f"the images, unpack it under the root as {self.multiview_dir}/ or pass multiview_root; or pass "
                "missing_frames='repeat' to repeat _10 / _11 instead, which is not the published protocol)")
            raise DatasetNotFoundError(f"{self.name} {stem}_10: expected frame {name}, looked for: {', '.join(map(str, cands))}{hint}")
        edge = self.gt_frame if n < self.gt_frame else self.gt_frame + 1
        return self._find_frame(stem, edge, dirs)[0], True

    def _index(self) -> list[dict]:
        root = require_dir(self.root, f"{self.name} root")
        split_dir = root / self.split
        img_dir = split_dir / self.image_dir
        require_dir(img_dir, f"{self.name} {self.split} images", [img_dir])
        has_gt = self.split == "training"
        occ_dir, noc_dir = split_dir / "flow_occ", split_dir / "flow_noc"
        if has_gt:
            require_dir(occ_dir, f"{self.name} training flow_occ", [occ_dir])
            stems = sorted(m.group(1) for m in (_NAME.match(p.name) for p in occ_dir.iterdir()) if m)
            if not stems:
                raise DatasetNotFoundError(f"{self.name}: expected XXXXXX_10.png flow files in {occ_dir}, found none")
        else:
            stems = sorted(m.group(1) for m in (_NAME.match(p.name) for p in img_dir.iterdir()) if m)
            if not stems:
                raise DatasetNotFoundError(f"{self.name}: expected XXXXXX_10.png frames in {img_dir}, found none")
        dirs = [img_dir] + self._multiview_dirs(root)
        numbers = self._frame_numbers()
        obj_dir = split_dir / "obj_map"
        records = []
        for stem in stems:
            found = [self._find_frame(stem, n, dirs) for n in numbers]
            rec = {"id": f"{stem}_10", "numbers": numbers, "images": [f for f, _ in found], "pair": self.pair_position,
                   "repeated": [n for n, (_, rep) in zip(numbers, found) if rep]}
            if has_gt:
                rec["flow_occ"] = occ_dir / f"{stem}_10.png"
                noc = noc_dir / f"{stem}_10.png"
                rec["flow_noc"] = noc if noc.is_file() else None
                obj = obj_dir / f"{stem}_10.png"
                rec["obj_map"] = obj if obj.is_file() else None
            records.append(rec)
        return records

    def _load(self, rec: dict) -> FlowSample:
        frames = stack_frames([read_image(p) for p in rec["images"]], rec["images"])
        h, w = frames.shape[-2:]
        meta = {
            "dataset": self.name,
            "split": self.split,
            "frame_numbers": list(rec["numbers"]),
            "image_paths": [str(p) for p in rec["images"]],
            "repeated_frames": list(rec["repeated"]),
        }
        pair_index = (rec["pair"],)
        if "flow_occ" not in rec:
            return FlowSample(rec["id"], frames, pair_index=pair_index, meta=meta)
        flow, valid = read_flow(rec["flow_occ"])
        check_flow_size(flow, rec["flow_occ"], h, w)
        occluded = None
        if rec["flow_noc"] is not None:
            flow_noc, valid_noc = read_flow(rec["flow_noc"])
            check_flow_size(flow_noc, rec["flow_noc"], h, w)
            occluded = (valid & ~valid_noc)[None]
            meta["flow_noc_path"] = str(rec["flow_noc"])
        meta["flow_occ_path"] = str(rec["flow_occ"])
        if rec.get("obj_map") is not None:
            meta["foreground"] = self._read_object_map(rec["obj_map"], h, w)[None]
        return FlowSample(
            rec["id"],
            frames,
            flow=flow.transpose(2, 0, 1)[None].astype(np.float32),
            valid=valid[None],
            occluded=occluded,
            pair_index=pair_index,
            meta=meta,
        )


    @staticmethod
    def _read_object_map(path: Path, h: int, w: int) -> np.ndarray:
        """``obj_map/XXXXXX_10.png`` (8-bit, 0 = background, > 0 = a moving object's index) -> foreground ``(H, W)``."""
        obj = read_image(path)
        obj = obj[..., 0] if obj.ndim == 3 else obj
        if obj.shape != (h, w):
            raise FormatError(f"{path}: expected an object map of {w}x{h} like its frames, found {obj.shape[1]}x{obj.shape[0]}")
        return obj > 0


class KITTI2015(KITTIFlow):
    __doc__ = KITTIFlow.__doc__
    name = "kitti2015"
    image_dir = "image_2"


class KITTI2012(KITTIFlow):
    """KITTI 2012 flow loader: like :class:`KITTIFlow` with ``colored_0`` images (194 training pairs)."""

    name = "kitti2012"
    image_dir = "colored_0"
    multiview_dir = "data_stereo_flow_multiview"
    multiview_zip = "data_stereo_flow_multiview.zip (https://www.cvlibs.net/datasets/kitti/eval_stereo_flow.php?benchmark=flow)"
