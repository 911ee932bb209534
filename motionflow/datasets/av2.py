"""Argoverse 2 sensor logs as consecutive lidar sweep pairs, with scene-flow labels where present.

Download: https://www.argoverse.org/av2.html (Sensor dataset, ``s5cmd`` from
``s3://argoverse/datasets/av2/sensor/``); scene-flow labels from the av2-api scene-flow tools
(``av2.evaluation.scene_flow``), BucketedSceneFlowEval / SceneFlowZoo, or per log as in the av2-api
unit-test data.

Expected tree::

    ROOT/<split>/<log_id>/                  (or ROOT = one log, or ROOT = a folder of logs)
      sensors/lidar/<timestamp_ns>.feather  x, y, z (float16), intensity, laser_number, offset_ns; ego frame
      city_SE3_egovehicle.feather           timestamp_ns, qw, qx, qy, qz, tx_m, ty_m, tz_m
      calibration/egovehicle_SE3_sensor.feather   (not needed: sweeps are stored in the ego frame)
      flow labels, any of:
        flow_labels.feather                 labels of the log's FIRST sweep pair (av2-api test-data layout)
        flow_labels/<timestamp_ns>.feather  labels of the pair starting at that sweep
        LABELS_ROOT/<log_id>/<timestamp_ns>.feather   (option ``labels_root``; BucketedSceneFlowEval layout)

A label file has one row per point of the pair's first sweep: ``flow_tx_m``, ``flow_ty_m``,
``flow_tz_m`` (metres), a class column (``classes``, ``classes_0`` or ``category_indices``), optional
``is_valid`` (default all True), ``is_ground_0`` (-> ``ground1``; ``ground2`` comes from the next pair's
file when it exists), ``dynamic`` / ``is_dynamic`` (-> ``meta["dynamic"]``, the official eval's motion
split) and ``is_close`` (-> ``meta``). The official challenge annotation files are cut to the
evaluation points by a mask archive, so their row count differs from the sweep's: they are rejected
with a FormatError that says so.

Two label conventions exist; every sample is returned in the first (``meta["label_convention"]``
says which one the file used):

* ``"av2"`` (av2-api ``Flow.from_sweep_pair``, ``make_annotation_files``, the av2-api test data):
  class index 0 = background, 1..30 the annotation categories in enum order; flow in the ego frame of
  t0 **including** the ego motion (static points: ``pc1 + flow == ego_motion @ pc1``);
* ``"bsfe"`` (BucketedSceneFlowEval ``create_gt_flow.py``, column ``classes_0``): -1 = background,
  0..29 the categories (``REGULAR_VEHICLE`` = 18); flow **without** the ego motion, in the ego frame of
  t0 (static points have zero flow). Converted as ``classes + 1`` and
  ``flow = ego_motion @ (pc1 + flow) - pc1``.

``label_convention="auto"`` (default) takes ``"bsfe"`` for a file whose ``classes_0`` column holds
BSFE's background index -1 (every real sweep has background points) and ``"av2"`` otherwise; pass the
convention explicitly for files that cannot tell. A class index outside the convention's range raises
a FormatError naming the file (a BSFE file read as av2 has -1s).

``ego_motion = inv(city_SE3_ego(t1)) @ city_SE3_ego(t0)``: for static points
``pc1 + flow == ego_motion @ pc1``. With ``compensate_ego=True`` pc1 is moved into pc2's frame
(``pc1' = ego_motion @ pc1``), the flow becomes object motion only (``pc1 + flow - pc1'``),
``ego_motion`` the identity and ``frame`` ``"ego-compensated"``. Non-finite points are dropped with
labels kept aligned (``meta["kept_index1"]``). Ground masks from the map raster are not computed
(``ground1`` is None without ``is_ground_0``). ``every=k`` keeps every k-th pair of the listing (the
challenge scores every 5th, av2-api ``get_eval_subset``). The sample id is ``<log_id>/<timestamp_ns of t0>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import DatasetNotFoundError, FormatError, ShapeError
from ..geometry import apply_transform, compose_transforms, invert_transform
from ..io import read_feather, read_points
from ..types import SceneFlowSample
from .base import Dataset, check_choice, natural_key
from .nan_points import keep_rows

FLOW_COLUMNS = ("flow_tx_m", "flow_ty_m", "flow_tz_m")
CLASS_COLUMNS = ("classes", "classes_0", "category_indices")
POSE_COLUMNS = ("timestamp_ns", "qw", "qx", "qy", "qz", "tx_m", "ty_m", "tz_m")
#: label convention -> (class index range, inclusive); see the module docstring
LABEL_CONVENTIONS = {"av2": (0, 30), "bsfe": (-1, 29)}


def quat_to_matrix(qw, qx, qy, qz) -> np.ndarray:
    """Unit quaternion (scalar first, as AV2 stores it) -> ``(3, 3)`` rotation."""
    q = np.array([qw, qx, qy, qz], np.float64)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def read_city_poses(path) -> dict:
    """``city_SE3_egovehicle.feather`` -> ``{timestamp_ns: (4, 4) float64 city_T_ego}``."""
    cols = read_feather(path, POSE_COLUMNS)
    poses = {}
    for i, ts in enumerate(cols["timestamp_ns"].tolist()):
        m = np.eye(4)
        m[:3, :3] = quat_to_matrix(cols["qw"][i], cols["qx"][i], cols["qy"][i], cols["qz"][i])
        m[:3, 3] = (cols["tx_m"][i], cols["ty_m"][i], cols["tz_m"][i])
        poses[int(ts)] = m
    return poses


def _is_log(path: Path) -> bool:
    return (path / "sensors" / "lidar").is_dir()


class Argoverse2SceneFlow(Dataset):
    """Argoverse 2 lidar sweep pairs.

    Args:
        root: the AV2 sensor root (``ROOT/<split>/<log>``), a folder of logs, or one log folder.
        split: ``"train"``, ``"val"`` or ``"test"`` (ignored when ``root`` is a log or a folder of logs).
        compensate_ego: return pc1 in pc2's frame and object-only flow (see the module docstring).
        labels_root: folder with ``<log_id>/<timestamp_ns>.feather`` label files.
        labelled_only: keep only the pairs that have labels.
        label_convention: ``"auto"``, ``"av2"`` or ``"bsfe"`` (see the module docstring).
        every: keep every k-th pair of the listing (after ``labelled_only``).
        max_samples: keep the first N pairs.
    """

    name = "av2"
    kind = "scene"

    def __init__(self, root, split: str = "val", compensate_ego: bool = False, labels_root=None,
                 labelled_only: bool = False, max_samples: Optional[int] = None, label_convention: str = "auto",
                 every: int = 1):
        self.compensate_ego = bool(compensate_ego)
        self.labels_root = Path(labels_root) if labels_root is not None else None
        self.labelled_only = labelled_only
        check_choice("av2 label_convention", label_convention, ("auto",) + tuple(LABEL_CONVENTIONS))
        self.label_convention = label_convention
        if int(every) < 1:
            raise ShapeError(f"av2 every: expected a positive integer, found {every}")
        self.every = int(every)
        self._poses: dict = {}
        super().__init__(root, split, max_samples)

    def _logs(self) -> list[Path]:
        root = Path(self.root)
        if _is_log(root):
            return [root]
        looked = [root / "sensors" / "lidar", root / str(self.split)]
        for folder in (root / str(self.split), root):
            if folder.is_dir():
                logs = sorted(p for p in folder.iterdir() if p.is_dir() and _is_log(p))
                if logs:
                    return logs
        raise DatasetNotFoundError(
            f"av2: expected a log folder (sensors/lidar/*.feather) or a split folder of logs at {root}; "
            f"looked for: {', '.join(map(str, looked))} and <log>/sensors/lidar under both"
        )

    def _label_file(self, log: Path, ts: int, first: bool) -> Optional[Path]:
        cands = []
        if self.labels_root is not None:
            cands.append(self.labels_root / log.name / f"{ts}.feather")
        cands.append(log / "flow_labels" / f"{ts}.feather")
        if first:
            cands.append(log / "flow_labels.feather")
        return next((c for c in cands if c.is_file()), None)

    def _index(self) -> list[dict]:
        if self.labels_root is not None and not self.labels_root.is_dir():
            raise DatasetNotFoundError(f"av2 labels_root: expected a directory, found nothing at {self.labels_root}")
        records = []
        for log in self._logs():
            pose_file = log / "city_SE3_egovehicle.feather"
            if not pose_file.is_file():
                raise DatasetNotFoundError(f"av2 log {log.name}: expected {pose_file}, found nothing")
            sweeps = sorted((log / "sensors" / "lidar").glob("*.feather"), key=lambda p: natural_key(p.name))
            stamps = []
            for p in sweeps:
                if not p.stem.isdigit():
                    raise FormatError(f"{p}: expected a sweep named <timestamp_ns>.feather, found {p.name}")
                stamps.append(int(p.stem))
            for i in range(len(sweeps) - 1):
                labels = self._label_file(log, stamps[i], first=i == 0)
                if self.labelled_only and labels is None:
                    continue
                records.append({
                    "id": f"{log.name}/{stamps[i]}",
                    "log": log,
                    "sweeps": (sweeps[i], sweeps[i + 1]),
                    "timestamps": (stamps[i], stamps[i + 1]),
                    "labels": labels,
                    "next_labels": self._label_file(log, stamps[i + 1], first=False),
                    "pose_file": pose_file,
                })
        return records[:: self.every]

    def _pose(self, pose_file: Path, ts: int) -> np.ndarray:
        if pose_file not in self._poses:
            self._poses[pose_file] = read_city_poses(pose_file)
        poses = self._poses[pose_file]
        if ts not in poses:
            raise FormatError(f"{pose_file}: expected a pose for timestamp_ns {ts}, found none")
        return poses[ts]

    def _convention(self, cols: dict, class_column: Optional[str]) -> str:
        if self.label_convention != "auto":
            return self.label_convention
        return "bsfe" if class_column == "classes_0" and bool(np.any(cols[class_column] == -1)) else "av2"

    def _labels(self, path: Path, cols: dict, pc1: np.ndarray, ego: np.ndarray) -> tuple:
        """``(flow, classes, convention)`` of a label file in the av2 convention (see the module docstring)."""
        flow = np.stack([cols[c] for c in FLOW_COLUMNS], axis=1).astype(np.float32)
        cname = next((c for c in CLASS_COLUMNS if c in cols), None)
        convention = self._convention(cols, cname)
        classes = None
        if cname is not None:
            classes = cols[cname].astype(np.int64)
            lo, hi = LABEL_CONVENTIONS[convention]
            bad = np.unique(classes[(classes < lo) | (classes > hi)])
            if bad.size:
                raise FormatError(
                    f"{path}: expected {convention} class indices in {lo}..{hi} in column {cname!r}, found "
                    f"{bad[:10].tolist()}; pass label_convention='bsfe' (background -1) or 'av2' (background 0) "
                    "to say which convention the file uses"
                )
        if convention == "bsfe":
            if classes is not None:
                classes = classes + 1
            flow = (apply_transform(pc1.astype(np.float64) + flow, ego) - pc1.astype(np.float64)).astype(np.float32)
        return flow, classes, convention

    @staticmethod
    def _read_labels(path: Path, n: int) -> dict:
        cols = read_feather(path)
        missing = [c for c in FLOW_COLUMNS if c not in cols]
        if missing:
            raise FormatError(f"{path}: expected flow columns {list(FLOW_COLUMNS)}, missing {missing}; found {sorted(cols)}")
        rows = len(cols[FLOW_COLUMNS[0]])
        if rows != n:
            raise FormatError(
                f"{path}: expected one label row per point of the first sweep ({n}), found {rows} rows "
                "(the official challenge annotation files hold only the masked evaluation points)"
            )
        return cols

    def _load(self, rec: dict) -> SceneFlowSample:
        pc1, pc2 = (read_points(p) for p in rec["sweeps"])
        n1, n2 = len(pc1), len(pc2)
        t0, t1 = rec["timestamps"]
        e0, e1 = self._pose(rec["pose_file"], t0), self._pose(rec["pose_file"], t1)
        ego = compose_transforms(invert_transform(e1), e0)
        meta = {"dataset": self.name, "split": self.split, "log_id": rec["log"].name, "timestamps_ns": (t0, t1),
                "sweep_paths": [str(p) for p in rec["sweeps"]], "city_SE3_ego1": e0, "city_SE3_ego2": e1}
        flow = valid = classes = ground1 = ground2 = None
        if rec["labels"] is not None:
            cols = self._read_labels(rec["labels"], n1)
            meta["labels_path"] = str(rec["labels"])
            flow, classes, meta["label_convention"] = self._labels(rec["labels"], cols, pc1, ego)
            valid = cols["is_valid"].astype(bool) if "is_valid" in cols else np.ones(n1, bool)
            ground1 = cols["is_ground_0"].astype(bool) if "is_ground_0" in cols else None
            for src, dst in (("dynamic", "dynamic"), ("is_dynamic", "dynamic"), ("is_close", "is_close")):
                if src in cols:
                    meta[dst] = cols[src].astype(bool)
        if rec["next_labels"] is not None:
            try:
                nxt = read_feather(rec["next_labels"], [], optional=("is_ground_0",))  # that column only
            except FormatError:
                nxt = {}
            if "is_ground_0" in nxt and len(nxt["is_ground_0"]) == n2:
                ground2 = nxt["is_ground_0"].astype(bool)
        kept1, pc1, flow, valid, classes, ground1 = keep_rows(pc1, flow, valid, classes, ground1)
        for k in ("dynamic", "is_close"):
            if k in meta and len(kept1) != n1:
                meta[k] = meta[k][kept1]
        kept2, pc2, ground2 = keep_rows(pc2, ground2)
        # per-point firing times after timestamp_ns; the provider has already ego-compensated every point
        # to timestamp_ns, so they are information, not a deskewing input (see sceneflow.ego)
        offsets = [read_feather(p, [], optional=("offset_ns",)).get("offset_ns") for p in rec["sweeps"]]
        if all(o is not None and len(o) == n for o, n in zip(offsets, (n1, n2))):
            meta["offset_ns"] = (offsets[0][kept1].astype(np.int64), offsets[1][kept2].astype(np.int64))
        meta["num_nonfinite_dropped"] = (int(n1 - len(pc1)), int(n2 - len(pc2)))
        if len(pc1) != n1:
            meta["kept_index1"] = kept1
        if len(pc2) != n2:
            meta["kept_index2"] = kept2
        frame = "ego"
        if self.compensate_ego:
            moved = apply_transform(pc1, ego)
            if flow is not None:
                flow = (pc1.astype(np.float64) + flow - moved).astype(np.float32)
            pc1 = moved
            meta["ego_motion_removed"] = ego
            ego, frame = np.eye(4), "ego-compensated"
        return SceneFlowSample(rec["id"], pc1, pc2, flow=flow, valid=valid, classes=classes, ground1=ground1,
                               ground2=ground2, ego_motion=ego, frame=frame, meta=meta)
