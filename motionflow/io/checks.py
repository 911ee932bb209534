"""Input checks shared by the readers: the file exists, arrays have the documented shape."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import FormatError, ShapeError


def existing_file(path) -> Path:
    """Return ``Path(path)``; raise FormatError naming the path if it is not an existing file."""
    path = Path(path)
    if not path.is_file():
        found = "a directory" if path.is_dir() else "nothing"
        raise FormatError(f"{path}: expected an existing file, found {found}")
    return path


def read_bytes(path) -> bytes:
    return existing_file(path).read_bytes()


def load_numpy(path):
    """``np.load`` of an existing ``.npy`` / ``.npz`` (no pickles); FormatError naming the file otherwise."""
    path = existing_file(path)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise FormatError(f"{path}: expected a readable numpy file, found unreadable content ({exc})") from exc


def flow_array(flow, valid, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Check a flow ``(H, W, 2)`` and an optional valid ``(H, W)`` mask for writing."""
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ShapeError(f"{what}: expected flow of shape (H, W, 2), found {flow.shape}")
    flow = flow.astype(np.float32, copy=False)
    if valid is None:
        valid = np.isfinite(flow).all(axis=2)
    else:
        valid = np.asarray(valid)
        if valid.shape != flow.shape[:2]:
            raise ShapeError(f"{what}: expected valid of shape {flow.shape[:2]}, found {valid.shape}")
        valid = valid.astype(bool) & np.isfinite(flow).all(axis=2)
    return flow, valid
