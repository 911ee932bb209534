"""A lidar sequence without labels: a folder of sweeps as consecutive pairs or windows of T sweeps.

Expected tree::

    ROOT/
      000000.bin 000001.bin ...   KITTI velodyne scans (float32 N x 4), or .pcd / .ply / .npy / .feather sweeps
      poses.txt   (optional) one line per sweep: 12 numbers, the row-major 3x4 pose of sweep i in the
                  first sweep's frame (KITTI odometry ``poses/XX.txt``, camera-0 coordinates)
      calib.txt   (optional) KITTI odometry calibration; its ``Tr:`` line maps velodyne -> camera 0

KITTI odometry downloads: https://www.cvlibs.net/datasets/kitti/eval_odometry.php (velodyne laser
data, calibration files, ground-truth poses for sequences 00-10).

Sweeps are ordered by natural sort of their names; one suffix per folder. With ``poses.txt`` each
sample gets ``ego_motion`` (maps pc1's coordinates into pc2's frame): with ``calib.txt``,
``T_i = Tr^-1 P_i Tr`` turns the camera poses into lidar poses; without it the poses are taken to be
lidar poses already (e.g. a lidar odometry output). Without poses ``ego_motion`` is None.

``frames=2`` gives :class:`~motionflow.types.SceneFlowSample` pairs (flow None) with id ``<stem of
sweep 1>``; ``frames=T > 2`` gives :class:`SweepWindow` objects (T sweeps, consecutive windows
overlapping by T-1 sweeps, ``stride`` to change that). Non-finite points are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import DatasetNotFoundError, FormatError, ShapeError
from ..io import POINT_SUFFIXES, read_points
from ..types import SceneFlowSample
from .base import Dataset, natural_key, require_dir


@dataclass
class SweepWindow:
    """T consecutive lidar sweeps.

    Attributes:
        id: the first sweep's file stem.
        sweeps: T arrays ``(N_t, 3)`` float32, each in its own sensor frame.
        poses: ``(T, 4, 4)`` float64 lidar poses in the sequence's first-sweep frame, or None.
        meta: paths, intensities.
    """

    id: str
    sweeps: list
    poses: Optional[np.ndarray] = None
    meta: dict = field(default_factory=dict)


def read_kitti_poses(path) -> np.ndarray:
    """``poses.txt`` (12 numbers per line) -> ``(N, 4, 4)`` float64."""
    rows = []
    for k, line in enumerate(Path(path).read_text().splitlines()):
        if not line.strip():
            continue
        vals = line.split()
        if len(vals) != 12:
            raise FormatError(f"{path}:{k + 1}: expected 12 numbers (a 3x4 pose), found {len(vals)}")
        try:
            m = np.eye(4)
            m[:3, :4] = np.array(vals, np.float64).reshape(3, 4)
        except ValueError:
            raise FormatError(f"{path}:{k + 1}: expected numbers, found {line.strip()!r}") from None
        rows.append(m)
    return np.stack(rows) if rows else np.zeros((0, 4, 4))


def read_kitti_calib_tr(path) -> np.ndarray:
    """The ``Tr:`` (velodyne -> camera 0) line of a KITTI odometry ``calib.txt`` as ``(4, 4)``."""
    for line in Path(path).read_text().splitlines():
        if line.startswith("Tr:"):
            vals = line.split()[1:]
            if len(vals) != 12:
                raise FormatError(f"{path}: expected 12 numbers after 'Tr:', found {len(vals)}")
            m = np.eye(4)
            m[:3, :4] = np.array(vals, np.float64).reshape(3, 4)
            return m
    raise FormatError(f"{path}: expected a 'Tr:' line (velodyne -> camera 0), found none")


class VelodyneSequence(Dataset):
    """A folder of sweeps as pairs (``frames=2``) or windows of T sweeps.

    Args:
        root: the folder of sweeps.
        split: ignored.
        frames: sweeps per sample (2 = pairs).
        stride: sweeps between consecutive samples (default 1).
        max_samples: keep the first N samples.
    """

    name = "velodyne"
    kind = "scene"

    def __init__(self, root, split=None, frames: int = 2, stride: int = 1, max_samples: Optional[int] = None):
        if int(frames) < 2:
            raise ShapeError(f"velodyne frames: expected T >= 2, found {frames}")
        if int(stride) < 1:
            raise ShapeError(f"velodyne stride: expected >= 1, found {stride}")
        self.frames, self.stride = int(frames), int(stride)
        super().__init__(root, split, max_samples)

    def _index(self) -> list[dict]:
        root = require_dir(self.root, "velodyne root")
        files = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in POINT_SUFFIXES]
        suffixes = sorted({p.suffix.lower() for p in files})
        if not files:
            raise DatasetNotFoundError(
                f"velodyne: expected sweep files ({', '.join(POINT_SUFFIXES)}) in {root}, found none"
            )
        if len(suffixes) > 1:
            raise FormatError(f"{root}: expected sweeps of one format, found {suffixes}")
        files.sort(key=lambda p: natural_key(p.name))
        self.files = files
        self.poses = None
        if (root / "poses.txt").is_file():
            poses = read_kitti_poses(root / "poses.txt")
            if len(poses) < len(files):
                raise FormatError(f"{root / 'poses.txt'}: expected a pose for each of the {len(files)} sweeps, found {len(poses)}")
            poses = poses[: len(files)]
            if (root / "calib.txt").is_file():
                tr = read_kitti_calib_tr(root / "calib.txt")
                poses = np.linalg.inv(tr)[None] @ poses @ tr[None]
            self.poses = poses
        if len(files) < self.frames:
            return []
        return [
            {"id": files[s].stem, "index": list(range(s, s + self.frames))}
            for s in range(0, len(files) - self.frames + 1, self.stride)
        ]

    def _load(self, rec: dict):
        clouds, inten, kept, paths = [], [], [], []
        for i in rec["index"]:
            pts, itn = read_points(self.files[i], intensity=True)
            keep = np.isfinite(pts).all(axis=1)
            clouds.append(pts[keep])
            inten.append(None if itn is None else itn[keep])
            kept.append(int((~keep).sum()))
            paths.append(str(self.files[i]))
        meta = {"dataset": self.name, "paths": paths, "intensity": inten, "num_nonfinite_dropped": tuple(kept)}
        poses = None if self.poses is None else self.poses[rec["index"]]
        if self.frames == 2:
            ego = None if poses is None else np.linalg.inv(poses[1]) @ poses[0]
            return SceneFlowSample(rec["id"], clouds[0], clouds[1], ego_motion=ego, frame="sensor", meta=meta)
        return SweepWindow(rec["id"], clouds, poses, meta)
