"""Prediction files in each dataset's own naming (the layout the Sintel and KITTI servers take).

============================ ============================================================
dataset                      one file per scored flow pair / sample
============================ ============================================================
``sintel``                   ``SCENE/frame_XXXX.flo`` (flow from frame XXXX to XXXX+1)
``kitti2015`` / ``kitti2012`` ``XXXXXX_10.png`` (16-bit KITTI PNG)
other optical datasets       ``<sample-id>.flo`` (one pair) or ``<sample-id>_pNN.flo`` (pair NN)
scene-flow datasets          ``<sample-id>.npz`` with key ``flow`` ``(N, 3)``
============================ ============================================================

The Sintel frame number comes from the ground-truth flow file name when the loader records it
(``meta["flow_paths"]`` / ``meta["flow_files"]``), else from ``meta["frame_numbers"]`` /
``meta["frames"]`` indexed by the pair index, else from a sample id ``SCENE/frame_XXXX`` (the first
scored frame). KITTI uses the ground-truth flow name (``meta["flow_occ_path"]``), else the id's
``XXXXXX`` part. Scene-flow predictions hold one vector per point of the *loaded* pc1 (after the
loader's own filtering, e.g. NaN rows).

Every path is kept inside the folder: a name derived from a sample id that would leave it (``..``
components, an absolute path) raises a :class:`~motionflow.errors.FormatError` naming the sample id,
before anything is read or written.

A missing or mis-shaped prediction raises an error naming the sample and the file: nothing is
skipped silently. Predictions must be dense. Deviation: the KITTI devkit accepts sparse estimates
(invalid pixels, B = 0) and fills them by background interpolation before scoring; we refuse them
with an error that counts the invalid pixels.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..errors import DatasetNotFoundError, FormatError, ShapeError

_SINTEL_ID = re.compile(r"^(?P<scene>.+)/frame_(?P<num>\d+)$")
_KITTI_ID = re.compile(r"(?P<num>\d{6})(?:_\d+)?$")


def _meta_list(meta: dict, *keys):
    for key in keys:
        value = meta.get(key)
        if value is not None:
            return list(value) if isinstance(value, (list, tuple)) else [value]
    return None


def _pairs(sample) -> list:
    if sample.pair_index is not None:
        return list(sample.pair_index)
    return list(range(sample.frames.shape[0] - 1))


def _sintel_names(sample) -> list[str]:
    pairs = _pairs(sample)
    paths = _meta_list(sample.meta, "flow_paths", "flow_files")
    if paths is not None and len(paths) == len(pairs):
        return [f"{Path(p).parent.name}/{Path(p).stem}.flo" for p in paths]
    scene = sample.meta.get("scene")
    numbers = _meta_list(sample.meta, "frame_numbers", "frames")
    if scene is not None and numbers is not None and all(isinstance(n, (int, np.integer)) for n in numbers):
        return [f"{scene}/frame_{int(numbers[k]):04d}.flo" for k in pairs]
    m = _SINTEL_ID.match(sample.id)
    if m is None:
        raise ShapeError(
            f"sample {sample.id!r}: cannot name its Sintel prediction: expected an id 'SCENE/frame_XXXX' "
            f"or meta 'flow_paths' / 'scene' + 'frame_numbers', found meta keys {sorted(sample.meta)}"
        )
    first = int(m.group("num"))  # the id names the first scored frame
    return [f"{m.group('scene')}/frame_{first + k - pairs[0]:04d}.flo" for k in pairs]


def _kitti_names(sample) -> list[str]:
    paths = _meta_list(sample.meta, "flow_paths", "flow_files", "flow_occ_path")
    if paths is not None and len(paths) == 1:
        return [Path(paths[0]).stem + ".png"]
    m = _KITTI_ID.search(sample.id)
    if m is None:
        raise ShapeError(f"sample {sample.id!r}: cannot name its KITTI prediction: expected an id containing 'XXXXXX' (6 digits)")
    return [f"{m.group('num')}_10.png"]


def prediction_names(dataset_name: str, sample) -> list[str]:
    """Relative prediction paths of a sample: one per scored flow pair (optical) or one (scene)."""
    if hasattr(sample, "pc1"):
        return [f"{sample.id}.npz"]
    if dataset_name == "sintel":
        return _sintel_names(sample)
    if dataset_name in ("kitti2015", "kitti2012"):
        if sample.pair_index is not None and len(sample.pair_index) != 1:
            raise ShapeError(f"sample {sample.id!r}: KITTI scores one pair per sample, found {len(sample.pair_index)}")
        return _kitti_names(sample)
    pairs = _pairs(sample)
    if len(pairs) == 1:
        return [f"{sample.id}.flo"]
    return [f"{sample.id}_p{k:02d}.flo" for k in pairs]


def prediction_path(directory, name: str, sample_id: str) -> Path:
    """``directory / name``, refused with a FormatError naming the sample when it would leave ``directory``."""
    root = os.path.abspath(os.fspath(directory))
    if os.path.isabs(name) or (os.path.splitdrive(name)[0]):
        raise FormatError(f"sample id {sample_id!r}: its prediction file {name!r} is an absolute path; expected a "
                          f"path inside {root}")
    target = os.path.normpath(os.path.join(root, name))
    if os.path.commonpath([root, target]) != root or target == root:
        raise FormatError(f"sample id {sample_id!r}: its prediction file {name!r} leaves the folder {root}; "
                          "expected a path inside it (no '..' components)")
    return Path(target)


def _missing(sample_id: str, path: Path):
    return DatasetNotFoundError(f"prediction for sample {sample_id!r} is missing: expected the file {path}")


def read_optical_prediction(directory, dataset_name: str, sample) -> np.ndarray:
    """The ``(P, 2, H, W)`` float32 predicted flows of a sample's scored pairs, from ``directory``."""
    from ..io import read_flow

    h, w = sample.frames.shape[-2:]
    flows = []
    for name in prediction_names(dataset_name, sample):
        path = prediction_path(directory, name, sample.id)
        if not path.is_file():
            raise _missing(sample.id, path)
        try:
            flow, valid = read_flow(path)
        except FormatError as exc:
            raise FormatError(f"prediction for sample {sample.id!r}: {exc}") from exc
        if flow.shape != (h, w, 2):
            raise ShapeError(f"prediction for sample {sample.id!r} ({path}): expected flow of shape ({h}, {w}, 2), found {flow.shape}")
        if not valid.all():
            raise ShapeError(
                f"prediction for sample {sample.id!r} ({path}): expected a flow at every pixel, found {int((~valid).sum())} invalid pixels"
            )
        flows.append(np.moveaxis(flow, -1, 0))
    return np.stack(flows).astype(np.float32)


def read_scene_prediction(directory, sample) -> np.ndarray:
    """The ``(N, 3)`` predicted scene flow of a sample from ``directory/<id>.npz`` (key ``flow``)."""
    path = prediction_path(directory, prediction_names("", sample)[0], sample.id)
    if not path.is_file():
        raise _missing(sample.id, path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if "flow" not in data.files:
                raise FormatError(f"prediction for sample {sample.id!r} ({path}): expected key 'flow', found keys {sorted(data.files)}")
            flow = np.asarray(data["flow"])
    except (ValueError, OSError, EOFError) as exc:
        raise FormatError(f"prediction for sample {sample.id!r} ({path}): expected a readable .npz, found unreadable content ({exc})") from exc
    n = len(sample.pc1)
    if flow.shape != (n, 3):
        raise ShapeError(f"prediction for sample {sample.id!r} ({path}): expected flow of shape ({n}, 3), found {flow.shape}")
    return flow.astype(np.float32)


def write_prediction(directory, dataset_name: str, sample, flow) -> list[Path]:
    """Write a sample's predicted flows (``(P, 2, H, W)`` optical or ``(N, 3)`` scene) in the dataset's naming.

    Writes are atomic. Returns the written paths.
    """
    from ..io import atomic_write_bytes, write_flow

    names = prediction_names(dataset_name, sample)
    targets = [prediction_path(directory, name, sample.id) for name in names]  # all checked before any write
    paths = []
    if hasattr(sample, "pc1"):
        import io as _io

        buf = _io.BytesIO()
        np.savez(buf, flow=np.asarray(flow, dtype=np.float32))
        atomic_write_bytes(targets[0], buf.getvalue())
        return targets
    flow = np.asarray(flow)
    if flow.ndim != 4 or flow.shape[0] != len(names) or flow.shape[1] != 2:
        raise ShapeError(f"write_prediction {sample.id!r}: expected flow of shape ({len(names)}, 2, H, W), found {flow.shape}")
    for path, f in zip(targets, flow):
        write_flow(path, np.moveaxis(f, 0, -1))
        paths.append(path)
    return paths
