"""Optical-flow files of any supported format, chosen by the file suffix.

========== ===================================================================
suffix     format
========== ===================================================================
``.flo``   Middlebury (:mod:`motionflow.io.flo`)
``.png``   KITTI 16-bit PNG (:mod:`motionflow.io.kitti_png`)
``.pfm``   PFM, first two channels (:mod:`motionflow.io.pfm`)
``.npy``   ``(H, W, 2)`` float array; NaN marks invalid pixels
``.npz``   keys ``flow`` ``(H, W, 2)`` and optional ``valid`` ``(H, W)``
========== ===================================================================
"""

from __future__ import annotations

import io as _io
from pathlib import Path

import numpy as np

from ..errors import FormatError
from .atomic import atomic_write_bytes
from .checks import flow_array, load_numpy
from .flo import read_flo, write_flo
from .kitti_png import read_kitti_png, write_kitti_png
from .pfm import read_pfm_flow, write_pfm_flow

FLOW_SUFFIXES = (".flo", ".png", ".pfm", ".npy", ".npz")


def _suffix(path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FLOW_SUFFIXES:
        raise FormatError(
            f"{path}: expected a flow file with suffix {', '.join(FLOW_SUFFIXES)}, found {suffix or 'no suffix'!r}"
        )
    return suffix


def _as_hw2(arr, path, what: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 2:
        return arr.astype(np.float32, copy=False)
    raise FormatError(f"{path}: expected {what} of shape (H, W, 2), found {arr.shape}")


def _read_npy(path) -> tuple[np.ndarray, np.ndarray]:
    flow = _as_hw2(load_numpy(path), path, "a flow array")
    return flow, np.isfinite(flow).all(axis=2)


def _read_npz(path) -> tuple[np.ndarray, np.ndarray]:
    with load_numpy(path) as data:
        if not hasattr(data, "files"):
            raise FormatError(f"{path}: expected an .npz archive, found a plain array")
        if "flow" not in data.files:
            raise FormatError(f"{path}: expected key 'flow' in the .npz, found keys {sorted(data.files)}")
        flow = _as_hw2(data["flow"], path, "'flow'")
        finite = np.isfinite(flow).all(axis=2)
        if "valid" in data.files:
            valid = np.asarray(data["valid"])
            if valid.shape != flow.shape[:2]:
                raise FormatError(f"{path}: expected 'valid' of shape {flow.shape[:2]}, found {valid.shape}")
            return flow, valid.astype(bool) & finite
        return flow, finite


def read_flow(path) -> tuple[np.ndarray, np.ndarray]:
    """Read an optical-flow file of any supported format.

    Returns:
        ``(flow, valid)``: ``(H, W, 2)`` float32 (channel 0 = u to the right, 1 = v down, pixels)
        and ``(H, W)`` bool.

    Raises:
        FormatError: unknown suffix (the message lists the supported ones), missing file, or
            content that does not match the format.
    """
    suffix = _suffix(path)
    reader = {
        ".flo": read_flo,
        ".png": read_kitti_png,
        ".pfm": read_pfm_flow,
        ".npy": _read_npy,
        ".npz": _read_npz,
    }[suffix]
    return reader(path)


def write_flow(path, flow, valid=None):
    """Write ``flow`` ``(H, W, 2)`` (and its ``valid`` mask) in the format named by the suffix.

    Writes are atomic (temporary file + ``os.replace``). Invalid pixels are stored as the format's
    unknown marker: 1e10 in ``.flo``, B = 0 in KITTI PNG, NaN in ``.pfm`` and ``.npy``; ``.npz``
    stores the ``valid`` mask beside the flow.
    """
    suffix = _suffix(path)
    if suffix == ".flo":
        return write_flo(path, flow, valid)
    if suffix == ".png":
        return write_kitti_png(path, flow, valid)
    if suffix == ".pfm":
        return write_pfm_flow(path, flow, valid)
    flow, valid = flow_array(flow, valid, f"write_flow {path}")
    buf = _io.BytesIO()
    if suffix == ".npy":
        out = flow.copy()
        out[~valid] = np.nan
        np.save(buf, out)
    else:
        np.savez_compressed(buf, flow=flow, valid=valid)
    return atomic_write_bytes(path, buf.getvalue())
