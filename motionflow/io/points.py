"""Point-cloud files: ``(N, 3)`` float32 metres in, the same out.

========== ======================================================================================
suffix     format
========== ======================================================================================
``.bin``   KITTI velodyne: float32 ``N x 4`` (x, y, z, reflectance), no header
``.npy``   ``(N, >=3)`` array; columns 0-2 are xyz, column 3 (if any) intensity
``.npz``   a named key (default: the first of ``pc1``, ``pos1``, ``points`` present)
``.pcd``   Point Cloud Library, read and written with open3d (optional dependency)
``.ply``   Stanford PLY, read and written with open3d (optional dependency)
``.feather`` Argoverse 2 lidar sweep: columns x, y, z (float16 on disk), intensity (pyarrow)
========== ======================================================================================

NaN points (Argoverse 2 exports pad clouds with NaN) are returned as they are: loaders drop them
and keep the labels aligned (see :func:`finite_rows`).
"""

from __future__ import annotations

import io as _io
import os
import re
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from ..errors import FormatError, ShapeError, require, require_open3d
from .atomic import atomic_path, atomic_write_bytes
from .checks import existing_file, load_numpy

POINT_SUFFIXES = (".bin", ".npy", ".npz", ".pcd", ".ply", ".feather")
WRITABLE_POINT_SUFFIXES = (".bin", ".npy", ".npz", ".pcd", ".ply", ".feather")
DEFAULT_NPZ_KEYS = ("pc1", "pos1", "points")


def _suffix(path, allowed) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in allowed:
        raise FormatError(
            f"{path}: expected a point-cloud file with suffix {', '.join(allowed)}, "
            f"found {suffix or 'no suffix'!r}"
        )
    return suffix


def _xyz(arr, path, what: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 2 or arr.shape[1] < 3:
        raise FormatError(f"{path}: expected {what} of shape (N, 3) or (N, >3), found {arr.shape}")
    return np.ascontiguousarray(arr[:, :3], dtype=np.float32)


def read_velodyne_bin(path) -> np.ndarray:
    """Read a KITTI velodyne ``.bin`` scan as ``(N, 4)`` float32: x, y, z, reflectance.

    Raises:
        FormatError: missing file or a size that is not a multiple of 16 bytes.
    """
    data = existing_file(path).read_bytes()
    if len(data) % 16:
        raise FormatError(
            f"{path}: expected float32 N x 4 (a multiple of 16 bytes), found {len(data)} bytes"
        )
    return np.frombuffer(data, "<f4").reshape(-1, 4).copy()


def read_feather(path, columns=None, optional=()) -> dict:
    """Read a Feather (Arrow IPC) table as ``{column: numpy array}``.

    Only the wanted columns are decoded (an AV2 sweep's xyz: about 6x faster than the whole table).

    Args:
        columns: the columns that must be present (all columns when None).
        optional: further columns returned when present (absent ones are left out of the dict).

    Raises:
        FormatError: missing or unreadable file, or a missing column (the message lists the ones found).
    """
    feather = require("pyarrow.feather", "pyarrow")
    path = existing_file(path)
    try:
        names = _feather_columns(path)
        wanted = list(names) if columns is None else list(columns)
        missing = [c for c in wanted if c not in names]
        if missing:
            raise FormatError(f"{path}: expected columns {wanted}, missing {missing}; found columns {names}")
        wanted += [c for c in optional if c in names and c not in wanted]
        table = feather.read_table(str(path), columns=wanted)
    except FormatError:
        raise
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError subclasses
        raise FormatError(f"{path}: expected a Feather (Arrow IPC) file, found unreadable content ({exc})") from exc
    out = {}
    for c in wanted:
        col = table.column(c)
        if col.null_count:
            col = col.to_numpy(zero_copy_only=False)
        arr = np.asarray(col)
        out[c] = arr.astype(np.float32) if arr.dtype == np.float16 else arr
    return out


def _feather_columns(path: Path) -> list:
    """The column names of a Feather file, from its schema (no column is decoded)."""
    ipc = require("pyarrow.ipc", "pyarrow")
    try:
        with ipc.open_file(str(path)) as reader:  # Feather V2 = Arrow IPC file
            return list(reader.schema.names)
    except Exception:  # Feather V1 (or not Arrow at all): read the table to learn its columns
        feather = require("pyarrow.feather", "pyarrow")
        return list(feather.read_table(str(path)).schema.names)


def write_feather(path, columns: dict) -> Path:
    """Write ``{name: 1-D array}`` as a Feather file (atomically)."""
    pa = require("pyarrow", "pyarrow")
    feather = require("pyarrow.feather", "pyarrow")
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ShapeError(f"write_feather {path}: expected columns of equal length, found {lengths}")
    table = pa.table({k: np.asarray(v) for k, v in columns.items()})
    with atomic_path(path) as tmp:
        feather.write_feather(table, str(tmp))
    return Path(path)


def read_npz_key(path, keys) -> tuple[str, np.ndarray]:
    """Return ``(key, array)`` for the first of ``keys`` present in the ``.npz`` at ``path``."""
    with load_numpy(path) as data:
        if not hasattr(data, "files"):
            raise FormatError(f"{path}: expected an .npz archive, found a plain array")
        for key in keys:
            if key in data.files:
                return key, data[key]
        raise FormatError(f"{path}: expected one of the keys {list(keys)}, found keys {sorted(data.files)}")


@contextmanager
def _native_output() -> Iterator[list]:
    """Send what native code writes to the process's stdout and stderr (file descriptors 1 and 2)
    into a temporary file for the duration of the block; the list it yields then holds that text.

    open3d reports a failed read only as ``[Open3D WARNING]`` lines on stdout (and its PLY parser as
    ``RPly: ...`` lines on stderr) and returns what it got, e.g. a truncated PLY's garbage points.
    """
    captured: list = []
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = (os.dup(1), os.dup(2))
    except (OSError, ValueError, AttributeError):  # no such descriptors (embedded interpreters)
        yield captured
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            tmp.seek(0)
            captured.append(tmp.read().decode("utf-8", "replace"))


def _read_open3d(path) -> np.ndarray:
    o3d = require_open3d()
    path = existing_file(path)
    with _native_output() as output:
        cloud = o3d.io.read_point_cloud(str(path))
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in "".join(output).splitlines()]
    failures = [line for line in lines if "fail" in line.lower() or line.startswith("RPly")]
    if failures or len(cloud.points) == 0:
        why = failures[0] if failures else "empty or malformed file"
        raise FormatError(f"{path}: expected a point cloud with at least one point, found "
                          f"{'none' if len(cloud.points) == 0 else 'a damaged file'} (open3d: {why})")
    return np.asarray(cloud.points, dtype=np.float32)


def read_points(path, key: Optional[str] = None, *, intensity: bool = False):
    """Read a point cloud as ``(N, 3)`` float32 xyz.

    Args:
        path: a ``.bin``, ``.npy``, ``.npz``, ``.pcd``, ``.ply`` or ``.feather`` file.
        key: for ``.npz``, the array to read (default: the first of ``pc1``, ``pos1``, ``points``).
        intensity: also return the per-point intensity / reflectance ``(N,)`` float32
            (None where the format has none: ``.pcd`` / ``.ply`` / 3-column arrays).

    Returns:
        ``points`` or ``(points, intensity)``.

    Raises:
        FormatError: unknown suffix (lists the supported ones), missing file, bad content.
    """
    suffix = _suffix(path, POINT_SUFFIXES)
    inten = None
    if suffix == ".bin":
        raw = read_velodyne_bin(path)
        pts, inten = np.ascontiguousarray(raw[:, :3]), raw[:, 3].copy()
    elif suffix in (".npy", ".npz"):
        if suffix == ".npy":
            arr = load_numpy(path)
            if hasattr(arr, "files"):
                raise FormatError(f"{path}: expected a .npy array, found an .npz archive")
            name = "the array"
        else:
            name, arr = read_npz_key(path, [key] if key is not None else DEFAULT_NPZ_KEYS)
            name = repr(name)
        pts = _xyz(arr, path, name)
        if np.asarray(arr).shape[1] > 3:
            inten = np.asarray(arr)[:, 3].astype(np.float32)
        elif intensity and suffix == ".npz":
            try:
                inten = read_npz_key(path, ["intensity"])[1].astype(np.float32)
            except FormatError:
                inten = None
            if inten is not None and inten.shape != (len(pts),):
                raise FormatError(f"{path}: expected 'intensity' of shape ({len(pts)},), found {inten.shape}")
    elif suffix in (".pcd", ".ply"):
        pts = _read_open3d(path)
    else:
        cols = read_feather(path, ["x", "y", "z"], optional=("intensity",) if intensity else ())
        pts = np.stack([cols["x"], cols["y"], cols["z"]], axis=1).astype(np.float32)
        if "intensity" in cols:
            inten = cols["intensity"].astype(np.float32)
    return (pts, inten) if intensity else pts


def write_points(path, points, intensity=None) -> Path:
    """Write ``(N, 3)`` points (and optional ``(N,)`` intensity) in the format named by the suffix.

    ``.npz`` stores key ``points`` (and ``intensity``); ``.bin`` stores float32 N x 4 with zero
    reflectance when none is given; ``.feather`` stores columns x, y, z (float32) and intensity;
    ``.pcd`` / ``.ply`` go through open3d (xyz only). Writes are atomic.
    """
    suffix = _suffix(path, WRITABLE_POINT_SUFFIXES)
    pts = np.asarray(points, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ShapeError(f"write_points {path}: expected points of shape (N, 3), found {pts.shape}")
    if intensity is not None:
        intensity = np.asarray(intensity, dtype=np.float32)
        if intensity.shape != (len(pts),):
            raise ShapeError(
                f"write_points {path}: expected intensity of shape ({len(pts)},), found {intensity.shape}"
            )
    if suffix in (".bin", ".npy"):
        if suffix == ".bin" or intensity is not None:
            four = np.zeros((len(pts), 4), np.float32)
            four[:, :3] = pts
            if intensity is not None:
                four[:, 3] = intensity
            out = four
        else:
            out = pts
        if suffix == ".bin":
            return atomic_write_bytes(path, out.astype("<f4").tobytes())
        buf = _io.BytesIO()
        np.save(buf, out)
        return atomic_write_bytes(path, buf.getvalue())
    if suffix == ".npz":
        buf = _io.BytesIO()
        arrays = {"points": pts} if intensity is None else {"points": pts, "intensity": intensity}
        np.savez_compressed(buf, **arrays)
        return atomic_write_bytes(path, buf.getvalue())
    if suffix == ".feather":
        cols = {"x": pts[:, 0], "y": pts[:, 1], "z": pts[:, 2]}
        if intensity is not None:
            cols["intensity"] = intensity
        return write_feather(path, cols)
    o3d = require_open3d()
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts.astype(np.float64)))
    with atomic_path(path) as tmp:
        if not o3d.io.write_point_cloud(str(tmp), cloud):
            raise FormatError(f"{path}: open3d failed to write the point cloud")
    return Path(path)


def finite_rows(points) -> np.ndarray:
    """``(N,)`` bool: rows of ``points`` whose coordinates are all finite (drops NaN padding)."""
    return np.isfinite(np.asarray(points)).all(axis=1)
