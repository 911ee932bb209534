"""Middlebury ``.flo`` optical flow.

Layout (little endian): float32 magic 202021.25 (the bytes ``PIEH``), int32 width, int32 height, then
``H * W * 2`` float32 with u and v interleaved, row-major. Values with ``|v| > 1e9`` mark unknown flow
(Middlebury ``UNKNOWN_FLOW_THRESH``); they are read as invalid and written as 1e10.
"""

from __future__ import annotations

import numpy as np

from ..errors import FormatError
from .atomic import atomic_write_bytes
from .checks import flow_array, read_bytes

FLO_MAGIC = 202021.25
UNKNOWN_FLOW_THRESH = 1e9
UNKNOWN_FLOW = 1e10


def read_flo(path) -> tuple[np.ndarray, np.ndarray]:
    """Read a ``.flo`` file.

    Returns:
        ``flow`` ``(H, W, 2)`` float32 (invalid pixels keep their stored values) and ``valid``
        ``(H, W)`` bool (False where ``|u|`` or ``|v|`` > 1e9 or not finite).

    Raises:
        FormatError: missing file, wrong magic, non-positive size, or a size that disagrees with
            the header.
    """
    data = read_bytes(path)
    if len(data) < 12:
        raise FormatError(f"{path}: expected a .flo header of 12 bytes, found a file of {len(data)} bytes")
    magic = np.frombuffer(data, "<f4", 1, 0)[0]
    if magic != np.float32(FLO_MAGIC):
        raise FormatError(
            f"{path}: expected .flo magic {FLO_MAGIC} (bytes b'PIEH'), found {float(magic)!r} ({data[:4]!r})"
        )
    width, height = (int(v) for v in np.frombuffer(data, "<i4", 2, 4))
    if width <= 0 or height <= 0 or width * height > 1 << 30:
        raise FormatError(f"{path}: expected a positive .flo size, found width={width} height={height}")
    expected = 12 + width * height * 2 * 4
    if len(data) != expected:
        raise FormatError(
            f"{path}: header says {width}x{height} so expected {expected} bytes, found {len(data)} bytes"
        )
    flow = np.frombuffer(data, "<f4", width * height * 2, 12).reshape(height, width, 2).astype(np.float32)
    valid = np.isfinite(flow).all(axis=2) & (np.abs(flow) <= UNKNOWN_FLOW_THRESH).all(axis=2)
    return flow, valid


def encode_flo(flow, valid=None) -> bytes:
    """The bytes of a ``.flo`` file for ``flow`` ``(H, W, 2)``; invalid pixels become 1e10."""
    flow, valid = flow_array(flow, valid, "write_flo")
    out = flow.astype("<f4", copy=True)
    out[~valid] = UNKNOWN_FLOW
    h, w = flow.shape[:2]
    header = np.array([FLO_MAGIC], "<f4").tobytes() + np.array([w, h], "<i4").tobytes()
    return header + out.tobytes()


def write_flo(path, flow, valid=None):
    """Write ``flow`` ``(H, W, 2)`` to ``path`` as ``.flo`` (atomically); invalid pixels -> 1e10."""
    return atomic_write_bytes(path, encode_flo(flow, valid))
