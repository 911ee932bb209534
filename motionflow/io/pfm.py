"""PFM (portable float map), as used by FlyingThings3D.

Header: ``PF`` (3 channels) or ``Pf`` (1 channel), then ``W H``, then a scale whose sign gives the
byte order (negative = little endian), each on its own line; then float32 rows stored bottom-to-top.
Flow PFMs are 3-channel; the flow is the first two channels.
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import FormatError, ShapeError
from .atomic import atomic_write_bytes
from .checks import flow_array, read_bytes

_HEADER = re.compile(rb"\A(P[Ff])\s+(\d+)\s+(\d+)\s+([-+0-9.eE]+)\s")


def read_pfm(path) -> np.ndarray:
    """Read a PFM file as ``(H, W, 3)`` (``PF``) or ``(H, W)`` (``Pf``) float32, top row first.

    Raises:
        FormatError: missing file, bad header, or a data size that disagrees with the header.
    """
    data = read_bytes(path)
    m = _HEADER.match(data[:256])
    if m is None:
        raise FormatError(
            f"{path}: expected a PFM header 'PF' or 'Pf', width height, scale; found {data[:32]!r}"
        )
    channels = 3 if m.group(1) == b"PF" else 1
    width, height = int(m.group(2)), int(m.group(3))
    try:
        scale = float(m.group(4))
    except ValueError:
        raise FormatError(f"{path}: expected a numeric PFM scale, found {m.group(4)!r}") from None
    if scale == 0:
        raise FormatError(f"{path}: expected a non-zero PFM scale, found 0")
    offset = m.end()
    count = width * height * channels
    if len(data) - offset != 4 * count:
        raise FormatError(
            f"{path}: header says {width}x{height}x{channels} so expected {4 * count} data bytes, "
            f"found {len(data) - offset}"
        )
    dtype = "<f4" if scale < 0 else ">f4"
    arr = np.frombuffer(data, dtype, count, offset).astype(np.float32)
    shape = (height, width, 3) if channels == 3 else (height, width)
    return np.ascontiguousarray(arr.reshape(shape)[::-1])


def read_pfm_flow(path) -> tuple[np.ndarray, np.ndarray]:
    """Read a flow PFM: ``flow`` = first two channels ``(H, W, 2)``, ``valid`` = finite."""
    arr = read_pfm(path)
    if arr.ndim != 3:
        raise FormatError(f"{path}: expected a 3-channel ('PF') flow PFM, found a 1-channel ('Pf') map")
    flow = np.ascontiguousarray(arr[:, :, :2])
    return flow, np.isfinite(flow).all(axis=2)


def encode_pfm(array) -> bytes:
    """The bytes of a little-endian PFM for ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` floats."""
    arr = np.asarray(array, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ShapeError(f"write_pfm: expected an array (H, W) or (H, W, 3), found {arr.shape}")
    tag = b"PF" if arr.ndim == 3 else b"Pf"
    h, w = arr.shape[:2]
    header = tag + b"\n" + f"{w} {h}\n-1.0\n".encode()
    return header + np.ascontiguousarray(arr[::-1]).astype("<f4").tobytes()


def write_pfm(path, array):
    """Write a float map to ``path`` as little-endian PFM (atomically)."""
    return atomic_write_bytes(path, encode_pfm(array))


def write_pfm_flow(path, flow, valid=None):
    """Write flow ``(H, W, 2)`` as a 3-channel PFM (third channel 0); invalid pixels become NaN."""
    flow, valid = flow_array(flow, valid, "write_pfm_flow")
    out = np.zeros(flow.shape[:2] + (3,), np.float32)
    out[:, :, :2] = flow
    out[~valid, :2] = np.nan
    return write_pfm(path, out)
