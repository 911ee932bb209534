"""Lidar scene-flow sets distributed as ``.npz`` / ``.npy`` pairs (see research/scene_flow.md section 5).

=====================  ======================================================================================
name                   files and keys
=====================  ======================================================================================
kitti-sf-flownet3d     ``ROOT/NNNNNN.npz``: ``pos1``, ``pos2`` (not in correspondence), ``gt`` (flow on pos1)
kitti-sf-hplflownet    ``ROOT/NNNNNN/pc1.npy``, ``pc2.npy`` in 1:1 correspondence, flow = pc2 - pc1
lidar-kitti            ``ROOT/*.npz``: ``pc1``, ``pc2``, ``flow``
argoverse-nsfp         ``ROOT/<split>/<log>/*.npz``: ``pc1``, ``pc2``, ``flow``, ``mask1_tracks_flow``, ``mask2_tracks_flow``
nuscenes-nsfp          ``ROOT/<split>/*.npz``: same keys as argoverse-nsfp
waymo-fnsf             ``ROOT/<segment>/*.npz``: ``pc1`` (the LATER sweep), ``pc2`` (the earlier one), ``flow`` on pc1
pairs                  ``ROOT/**/*.npz``: ``pc1``, ``pc2``, optional ``flow``, ``valid``, ``ego_motion``
=====================  ======================================================================================

Non-finite points are dropped from each cloud with the flow and masks kept aligned;
``meta["kept_index1"]`` gives the kept rows' positions in the file. The sample id is the file's path
relative to the split folder without the suffix (``000042``, ``<log>/<t1>_<t2>``).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import DatasetNotFoundError, FormatError, UnknownNameError
from ..types import SceneFlowSample
from .base import Dataset, check_choice, natural_key, require_dir
from .nan_points import keep_rows, remap_mask
from .splits import select_split, split_names


def _load_npz(path: Path, required, optional=()) -> dict:
    try:
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise FormatError(f"{path}: expected an .npz archive, found a plain array")
            missing = [k for k in required if k not in data.files]
            if missing:
                raise FormatError(f"{path}: expected keys {list(required)}, missing {missing}; found {sorted(data.files)}")
            return {k: np.asarray(data[k]) for k in list(required) + [k for k in optional if k in data.files]}
    except FormatError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise FormatError(f"{path}: expected a readable .npz archive, found unreadable content ({exc})") from exc


def _cloud(arr, path, key) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 2 or arr.shape[1] < 3:
        raise FormatError(f"{path}: expected {key!r} of shape (N, 3), found {arr.shape}")
    return np.ascontiguousarray(arr[:, :3], dtype=np.float32)


def _flow(arr, path, key, n) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.shape != (n, 3):
        raise FormatError(f"{path}: expected {key!r} of shape ({n}, 3) like the first cloud, found {arr.shape}")
    return arr.astype(np.float32)


def _find_npz(folder: Path, recursive: bool) -> list[Path]:
    files = folder.rglob("*.npz") if recursive else folder.glob("*.npz")
    return sorted((p for p in files if p.is_file()), key=lambda p: natural_key(p.relative_to(folder).as_posix()))


class _NpzPairs(Dataset):
    """Shared listing for the npz pair sets: ``_files()`` lists, ``_read(path)`` returns the sample parts."""

    kind = "scene"
    recursive = False
    frame = "ego"
    split_table: Optional[str] = None
    sub_split_dirs = False  # look for ROOT/<split>/ first

    option_defaults: dict = {}

    def __init__(self, root, split: Optional[str] = None, max_samples: Optional[int] = None, **options):
        unknown = sorted(set(options) - set(self.option_defaults))
        if unknown:
            raise UnknownNameError(
                f"{self.name}: unknown options {unknown}; valid options: {sorted(self.option_defaults) or 'none'}"
            )
        self.options = {**self.option_defaults, **options}
        super().__init__(root, self.default_split if split is None else split, max_samples)

    default_split = "all"

    @classmethod
    def split_choices(cls) -> tuple:
        names = ("all",) + (split_names(cls.split_table) if cls.split_table else ())
        return names

    def _base_dir(self) -> Path:
        root = require_dir(self.root, f"{self.name} root")
        if self.sub_split_dirs and self.split != "all":
            d = root / self.split
            return require_dir(d, f"{self.name} split {self.split!r}", [d])
        return root

    def _files(self, base: Path) -> list[Path]:
        files = _find_npz(base, self.recursive)
        if not files:
            raise DatasetNotFoundError(
                f"{self.name}: expected .npz files in {base}{' (searched recursively)' if self.recursive else ''}, found none"
            )
        return files

    def _index(self) -> list[dict]:
        choices = self.split_choices() if not self.sub_split_dirs else None
        if choices is not None and self.split not in choices:
            raise UnknownNameError(f"{self.name} split: expected one of {list(choices)}, found {self.split!r}")
        base = self._base_dir()
        files = self._files(base)
        if self.split_table and self.split != "all":
            files = select_split(self.split_table, self.split, files, self.name)
        return [{"id": self._id(p, base), "path": p} for p in files]

    def _id(self, path: Path, base: Path) -> str:
        rel = path.relative_to(base)
        return rel.with_suffix("").as_posix() if rel.suffix == ".npz" else rel.as_posix()

    def _load(self, rec: dict) -> SceneFlowSample:
        parts = self._read(rec["path"])
        pc1, pc2 = parts["pc1"], parts["pc2"]
        n1, n2 = len(pc1), len(pc2)
        kept1, pc1, flow, valid = keep_rows(pc1, parts.get("flow"), parts.get("valid"))
        kept2, pc2 = keep_rows(pc2)
        meta = {"dataset": self.name, "split": self.split, "path": str(rec["path"]),
                "num_nonfinite_dropped": (int(n1 - len(pc1)), int(n2 - len(pc2)))}
        if len(pc1) != n1:
            meta["kept_index1"] = kept1
        if len(pc2) != n2:
            meta["kept_index2"] = kept2
        for key, kept, n in (("mask1_tracks_flow", kept1, n1), ("mask2_tracks_flow", kept2, n2)):
            if key in parts:
                meta[key] = remap_mask(parts[key], kept, n, f"{rec['path']}: {key!r}")
        meta.update(parts.get("meta", {}))
        if flow is not None and valid is None:
            valid = np.isfinite(flow).all(axis=1)
        return SceneFlowSample(
            rec["id"], pc1, pc2, flow=flow, valid=valid, ego_motion=parts.get("ego_motion"),
            frame=self.frame, meta=meta,
        )


def _depth_ground_cut(pc, keep_axis_max: Optional[tuple], ground: Optional[tuple]):
    """Bool mask of the points of ``pc`` that survive ``axis < max`` and ``axis > min`` cuts."""
    keep = np.ones(len(pc), bool)
    if keep_axis_max is not None:
        axis, limit = keep_axis_max
        keep &= pc[:, axis] < limit
    if ground is not None:
        axis, limit = ground
        keep &= pc[:, axis] > limit
    return keep


class KittiSFFlowNet3D(_NpzPairs):
    """FlowNet3D's KITTI scene flow (``kitti_rm_ground``: 150 pairs, ground removed): ``KITTI_o``.

    Download: the FlowNet3D README (``xingyul/flownet3d``) links ``kitti_rm_ground.zip`` (266 MB);
    NSFP ships the same files. Expected tree: ``ROOT/000000.npz .. 000149.npz`` with ``pos1``
    ``(N1, 3)``, ``pos2`` ``(N2, 3)`` and ``gt`` ``(N1, 3)``; the clouds are not in correspondence.

    Splits: ``all``; ``nsfp-train`` / ``nsfp-test`` (sorted ``[:100]`` / ``[100:]``: NSFP, RigidFlow);
    ``scoop-train`` / ``scoop-val`` / ``scoop-test`` (SCOOP's 90 / 10 / 50 file numbers); ``scoop-kitti-v``
    (SCOOP's 100 self-supervised training pairs, ``train_on_kitti_v.sh``: every file not in ``scoop-test``).

    Coordinates are returned as stored. ``max_depth`` (default None) drops points with column 0 >=
    ``max_depth`` from each cloud separately, which is FLOT / SCOOP's 35 m cut (they permute the axes
    ``(1, 2, 0)`` and cut the new z, i.e. the stored column 0).
    """

    name = "kitti-sf-flownet3d"
    option_defaults = {"max_depth": None}
    split_table = "kitti_sf_flownet3d.json"

    def _read(self, path: Path) -> dict:
        d = _load_npz(path, ("pos1", "pos2", "gt"))
        pc1, pc2 = _cloud(d["pos1"], path, "pos1"), _cloud(d["pos2"], path, "pos2")
        flow = _flow(d["gt"], path, "gt", len(pc1))
        max_depth = self.options["max_depth"]
        if max_depth is not None:
            k1, k2 = pc1[:, 0] < max_depth, pc2[:, 0] < max_depth
            pc1, flow, pc2 = pc1[k1], flow[k1], pc2[k2]
        return {"pc1": pc1, "pc2": pc2, "flow": flow}


class KittiSFHPLFlowNet(Dataset):
    """HPLFlowNet's KITTI scene flow (``KITTI_processed_occ_final``): ``KITTI_s``.

    Download: HPLFlowNet's ``data_preprocess/process_kitti.py`` builds it from KITTI scene flow 2015
    (points lifted from the disparity and optical-flow GT, so they are stereo points, not lidar).
    Expected tree: ``ROOT/000000/pc1.npy``, ``pc2.npy`` ... (or ``ROOT/KITTI_processed_occ_final/...``);
    ``pc1`` and ``pc2`` are ``(N, 3)`` in 1:1 correspondence and flow = pc2 - pc1. Axes: the left
    camera's x right, y down, z forward with x and y negated by ``process_kitti.py``
    (``pc[..., :2] *= -1``), so x points left, y up (the ground is near y = -1.65, the camera height)
    and z forward (depth).

    As published (HPLFlowNet ``datasets/kitti.py`` and ``transforms.ProcessData``, reused by PointPWC,
    FLOT, SCOOP): ``remove_ground=True`` drops the points with ``y < -1.4`` in BOTH pc1 and pc2,
    ``max_depth=35`` keeps the points with ``z < 35`` in both. HPLFlowNet keeps 142 of the 200 dirs with
    its ``KITTI_mapping.txt`` (not shipped here): pass ``mapping=PATH`` to apply it, or point ``root``
    at the 142-dir copy most mirrors ship. Splits: ``all``; ``scoop-train`` / ``scoop-test`` (92 / 50
    positions in the sorted 142).
    """

    name = "kitti-sf-hplflownet"
    kind = "scene"
    split_table = "kitti_sf_hplflownet.json"

    def __init__(self, root, split: str = "all", remove_ground: bool = True, max_depth: Optional[float] = 35.0,
                 mapping=None, max_samples: Optional[int] = None):
        self.remove_ground, self.max_depth, self.mapping = remove_ground, max_depth, mapping
        self.splits = ("all",) + split_names(self.split_table)
        super().__init__(root, split, max_samples)

    def _index(self) -> list[dict]:
        root = require_dir(self.root, f"{self.name} root")
        if (root / "KITTI_processed_occ_final").is_dir():
            root = root / "KITTI_processed_occ_final"
        dirs = sorted((p for p in root.iterdir() if (p / "pc1.npy").is_file()), key=lambda p: natural_key(p.name))
        if not dirs:
            raise DatasetNotFoundError(f"{self.name}: expected NNNNNN/pc1.npy folders under {root}, found none")
        if self.mapping is not None:
            lines = [ln.strip() for ln in Path(self.mapping).read_text().splitlines()]
            dirs = [d for d in dirs if int(d.name) < len(lines) and lines[int(d.name)] != ""]
        for d in dirs:
            if not (d / "pc2.npy").is_file():
                raise DatasetNotFoundError(f"{self.name} {d.name}: expected {d / 'pc2.npy'}, found nothing")
        if self.split != "all":
            dirs = select_split(self.split_table, self.split, dirs, self.name)
        return [{"id": d.name, "path": d} for d in dirs]

    def _load(self, rec: dict) -> SceneFlowSample:
        d = rec["path"]
        arrays = []
        for name in ("pc1.npy", "pc2.npy"):
            try:
                arrays.append(_cloud(np.load(d / name, allow_pickle=False), d / name, name))
            except (ValueError, OSError, EOFError) as exc:
                raise FormatError(f"{d / name}: expected a readable (N, 3) .npy array, found unreadable content ({exc})") from exc
        pc1, pc2 = arrays
        if pc1.shape != pc2.shape:
            raise FormatError(f"{d}: expected pc1 and pc2 in 1:1 correspondence, found {pc1.shape} and {pc2.shape}")
        n = len(pc1)
        keep = np.isfinite(pc1).all(axis=1) & np.isfinite(pc2).all(axis=1)
        if self.remove_ground:
            keep &= ~((pc1[:, 1] < -1.4) & (pc2[:, 1] < -1.4))
        if self.max_depth is not None:
            keep &= (pc1[:, 2] < self.max_depth) & (pc2[:, 2] < self.max_depth)
        pc1, pc2 = pc1[keep], pc2[keep]
        meta = {"dataset": self.name, "split": self.split, "path": str(d), "kept_index1": np.flatnonzero(keep),
                "num_points_file": n, "remove_ground": self.remove_ground, "max_depth": self.max_depth}
        return SceneFlowSample(rec["id"], pc1, pc2, flow=pc2 - pc1, frame="sensor", meta=meta)


class LidarKITTI(_NpzPairs):
    """lidarKITTI (Gojcic et al., CVPR 2021; ``zgojcic/Rigid3DSceneFlow``): real Velodyne points of KITTI
    scene flow 2015 with GT from projecting into the disparity / flow maps.

    Download: the Rigid3DSceneFlow README (``lidar_kitti.zip``, about 160 MB). Expected tree:
    ``ROOT/*.npz`` with ``pc1``, ``pc2``, ``flow`` (142 test pairs), in the rectified camera frame.

    As evaluated by Rigid3DSceneFlow: ``remove_ground=True`` keeps ``y > -1.4`` in each cloud
    separately, ``max_depth=35`` keeps ``z < 35`` in each cloud separately.
    """

    name = "lidar-kitti"
    frame = "sensor"
    option_defaults = {"remove_ground": True, "max_depth": 35.0}

    def _read(self, path: Path) -> dict:
        d = _load_npz(path, ("pc1", "pc2", "flow"))
        pc1, pc2 = _cloud(d["pc1"], path, "pc1"), _cloud(d["pc2"], path, "pc2")
        flow = _flow(d["flow"], path, "flow", len(pc1))
        ground = (1, -1.4) if self.options["remove_ground"] else None
        depth = self.options["max_depth"]
        depth = (2, depth) if depth is not None else None
        k1, k2 = _depth_ground_cut(pc1, depth, ground), _depth_ground_cut(pc2, depth, ground)
        return {"pc1": pc1[k1], "pc2": pc2[k2], "flow": flow[k1]}


class NSFPArgoverse(_NpzPairs):
    """Argoverse (v1 tracking) scene flow pseudo-GT released with NSFP (Li et al., NeurIPS 2021).

    Download: the NSFP README (``Lilac-Lee/Neural_Scene_Flow_Prior``, about 370 MB). Expected tree:
    ``ROOT/<split>/<log>/<t1>_<t2>.npz`` (split ``val``: 212 pairs) with ``pc1``, ``pc2``, ``flow``
    (ego frame of t1, ego motion included), ``mask1_tracks_flow``, ``mask2_tracks_flow`` (points on
    tracked objects; returned in ``meta`` as bool masks over the kept points). Split ``all`` reads
    every npz under ``ROOT``. Ground and far points are already removed in the files.
    """

    name = "argoverse-nsfp"
    recursive = True
    sub_split_dirs = True
    default_split = "val"

    def _read(self, path: Path) -> dict:
        d = _load_npz(path, ("pc1", "pc2", "flow"), ("mask1_tracks_flow", "mask2_tracks_flow"))
        pc1, pc2 = _cloud(d["pc1"], path, "pc1"), _cloud(d["pc2"], path, "pc2")
        out = {"pc1": pc1, "pc2": pc2, "flow": _flow(d["flow"], path, "flow", len(pc1))}
        for k in ("mask1_tracks_flow", "mask2_tracks_flow"):
            if k in d:
                out[k] = d[k]
        return out


class NSFPNuScenes(NSFPArgoverse):
    """nuScenes scene flow pseudo-GT released with NSFP: ``ROOT/<split>/*.npz`` with the same keys as
    :class:`NSFPArgoverse` (split ``val``: 310 pairs). NSFP also skips 15 samples it lists as bad in its
    code; this loader reads every file (deviation)."""

    name = "nuscenes-nsfp"


class WaymoFNSF(_NpzPairs):
    """Waymo Open scene flow pairs released with Fast Neural Scene Flow (Li et al., ICCV 2023).

    Download: the FNSF README (``Lilac-Lee/FastNSF``, about 453 MB, 202 pairs). Expected tree:
    ``ROOT/<segment>/<t+1>_<t>.npz`` with ``pc1`` = the LATER sweep (t+1), ``pc2`` = the earlier sweep
    (t), ``flow`` ``(N1, 3)`` defined on the later sweep's points and pointing back in time
    (``pc1 + flow`` lies on the surface sampled by ``pc2``), vehicle frame; ground (z <= 0.34 m) removed.

    What is returned (``order``):

    * ``"file"`` (default): the pair as stored and as FNSF evaluates it: ``pc1`` = later sweep,
      ``pc2`` = earlier sweep, ``flow`` as stored. ``meta["time_order"] = "backward"``.
    * ``"forward"``: the raw sweeps in forward time: ``pc1`` = earlier sweep (file ``pc2``), ``pc2`` =
      later sweep (file ``pc1``), ``flow = None`` (no label exists on the earlier sweep's points), and
      ``meta["backward_flow"]`` = the stored flow, defined on the returned ``pc2``.

    Why not "negate the flow": ``-flow`` is a forward flow only at the points ``pc1_file + flow``
    (the later points carried back to time t), not at the earlier sweep's measured points. A sample
    built that way (``pc1 = pc1_file + flow``, ``flow = -flow``, ``pc2 = pc1_file``) would put the two
    clouds in exact 1:1 correspondence and make nearest-neighbour matching score zero error.
    """

    name = "waymo-fnsf"
    recursive = True
    option_defaults = {"order": "file"}

    def __init__(self, root, split: Optional[str] = None, max_samples: Optional[int] = None, **options):
        check_choice("waymo-fnsf order", options.get("order", "file"), ("file", "forward"))
        super().__init__(root, split, max_samples, **options)

    def _read(self, path: Path) -> dict:
        order = self.options["order"]
        d = _load_npz(path, ("pc1", "pc2", "flow"))
        later, earlier = _cloud(d["pc1"], path, "pc1"), _cloud(d["pc2"], path, "pc2")
        flow = _flow(d["flow"], path, "flow", len(later))
        if order == "file":
            return {"pc1": later, "pc2": earlier, "flow": flow, "meta": {"time_order": "backward"}}
        keep = np.isfinite(later).all(axis=1)
        return {"pc1": earlier, "pc2": later[keep], "meta": {"time_order": "forward", "backward_flow": flow[keep]}}


class PointPairs(_NpzPairs):
    """Your own pairs: ``ROOT/**/*.npz`` with ``pc1`` ``(N, 3)``, ``pc2`` ``(M, 3)`` and optional ``flow``
    ``(N, 3)``, ``valid`` ``(N,)``, ``ego_motion`` ``(4, 4)``. Extra columns beyond xyz are ignored.
    The sample id is the relative path without ``.npz``."""

    name = "pairs"
    recursive = True
    frame = "ego"

    def _read(self, path: Path) -> dict:
        d = _load_npz(path, ("pc1", "pc2"), ("flow", "valid", "ego_motion"))
        pc1, pc2 = _cloud(d["pc1"], path, "pc1"), _cloud(d["pc2"], path, "pc2")
        out = {"pc1": pc1, "pc2": pc2}
        if "flow" in d:
            out["flow"] = _flow(d["flow"], path, "flow", len(pc1))
        if "valid" in d:
            if d["valid"].shape != (len(pc1),):
                raise FormatError(f"{path}: expected 'valid' of shape ({len(pc1)},), found {d['valid'].shape}")
            out["valid"] = d["valid"].astype(bool)
        if "ego_motion" in d:
            if d["ego_motion"].shape != (4, 4):
                raise FormatError(f"{path}: expected 'ego_motion' of shape (4, 4), found {d['ego_motion'].shape}")
            out["ego_motion"] = d["ego_motion"].astype(np.float64)
        return out
