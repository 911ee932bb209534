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
zip: either merged into the same ``image_2`` folder or under ``multiview_root`` (the multiview zip's
root, with the same ``training``/``testing`` layout). The clip is centred on the annotated pair
``_10 -> _11``: frames ``10 - (T-1)//2`` .. (T=3: 09, 10, 11; T=5: 08 .. 12, VideoFlow MOF's window),
clamped to 00..20, and ``pair_index`` names the GT pair's position.

GT: ``valid`` = flow_occ valid; ``occluded`` = flow_occ valid and not flow_noc valid (ptlflow), or
None without ``flow_noc``. The sample id is ``XXXXXX_10``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import DatasetNotFoundError, ShapeError
from ..io import read_flow, read_image
from ..types import FlowSample
from .base import Dataset, centered_window, check_flow_size, require_dir, stack_frames

_NAME = re.compile(r"^(\d{6})_10\.png$")


class KITTIFlow(Dataset):
    """KITTI flow loader (2015 by default).

    Args:
        root: the KITTI root holding ``training/`` and ``testing/``.
        split: ``"training"`` or ``"testing"``.
        frames: clip length T >= 2 (T > 2 needs the multiview frames).
        multiview_root: root of the multiview zip when its frames are not merged into ``root``.
        max_samples: keep the first N scenes.
    """

    name = "kitti2015"
    kind = "optical"
    splits = ("training", "testing")
    image_dir = "image_2"
    first_frame, last_frame, gt_frame = 0, 20, 10

    def __init__(
        self,
        root,
        split: str = "training",
        frames: int = 2,
        multiview_root=None,
        max_samples: Optional[int] = None,
    ):
        if int(frames) < 2:
            raise ShapeError(f"{self.name} frames: expected T >= 2, found {frames}")
        self.frames = int(frames)
        self.multiview_root = Path(multiview_root) if multiview_root is not None else None
        super().__init__(root, split, max_samples)

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
        mv_dir = self.multiview_root / self.split / self.image_dir if self.multiview_root else None
        if mv_dir is not None:
            require_dir(mv_dir, f"{self.name} multiview images", [mv_dir])
        start = centered_window(self.gt_frame, self.frames, self.first_frame, self.last_frame)
        numbers = list(range(start, start + self.frames))
        records = []
        for stem in stems:
            images = []
            for n in numbers:
                name = f"{stem}_{n:02d}.png"
                cands = [img_dir / name] + ([mv_dir / name] if mv_dir is not None else [])
                found = next((c for c in cands if c.is_file()), None)
                if found is None:
                    hint = "" if n in (10, 11) else " (frames other than _10/_11 come from the multiview zip: pass multiview_root)"
                    raise DatasetNotFoundError(
                        f"{self.name} {stem}_10: expected frame {name}, looked for: {', '.join(map(str, cands))}{hint}"
                    )
                images.append(found)
            rec = {"id": f"{stem}_10", "numbers": numbers, "images": images, "pair": numbers.index(self.gt_frame)}
            if has_gt:
                rec["flow_occ"] = occ_dir / f"{stem}_10.png"
                noc = noc_dir / f"{stem}_10.png"
                rec["flow_noc"] = noc if noc.is_file() else None
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
        return FlowSample(
            rec["id"],
            frames,
            flow=flow.transpose(2, 0, 1)[None].astype(np.float32),
            valid=valid[None],
            occluded=occluded,
            pair_index=pair_index,
            meta=meta,
        )


class KITTI2015(KITTIFlow):
    __doc__ = KITTIFlow.__doc__
    name = "kitti2015"
    image_dir = "image_2"


class KITTI2012(KITTIFlow):
    """KITTI 2012 flow loader: like :class:`KITTIFlow` with ``colored_0`` images (194 training pairs)."""

    name = "kitti2012"
    image_dir = "colored_0"
