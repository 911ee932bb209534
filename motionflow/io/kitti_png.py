"""KITTI 16-bit PNG optical flow.

Three uint16 channels in RGB order: ``u = (R - 2^15) / 64``, ``v = (G - 2^15) / 64``, ``valid = B > 0``.
OpenCV reads and writes BGR, so the channels are reversed here. Writing encodes ``64 * flow + 2^15``
rounded and clipped to ``[0, 65535]`` (flows beyond about +-512 px are clipped, not wrapped), with
B = 1 where valid and R = G = B = 0 elsewhere (the devkit's convention).
"""

from __future__ import annotations

import numpy as np

from ..errors import FormatError, require_cv2
from .atomic import atomic_write_bytes
from .checks import existing_file, flow_array


def read_kitti_png(path) -> tuple[np.ndarray, np.ndarray]:
    """Read a KITTI flow PNG.

    Returns:
        ``flow`` ``(H, W, 2)`` float32 (zeros where invalid) and ``valid`` ``(H, W)`` bool.

    Raises:
        FormatError: missing or unreadable file, or not a 3-channel 16-bit PNG.
    """
    cv2 = require_cv2()
    path = existing_file(path)
    raw = cv2.imread(str(path), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_COLOR)
    if raw is None:
        raise FormatError(f"{path}: expected a readable 16-bit PNG, OpenCV could not decode it")
    if raw.dtype != np.uint16 or raw.ndim != 3 or raw.shape[2] != 3:
        raise FormatError(
            f"{path}: expected a 3-channel 16-bit KITTI flow PNG, found dtype {raw.dtype} "
            f"with shape {raw.shape}"
        )
    rgb = raw[:, :, ::-1]
    valid = rgb[:, :, 2] > 0
    flow = (rgb[:, :, :2].astype(np.float32) - 2.0**15) / 64.0
    flow[~valid] = 0.0
    return flow, valid


def encode_kitti_png(flow, valid=None) -> bytes:
    """The PNG bytes of a KITTI flow file for ``flow`` ``(H, W, 2)``."""
    cv2 = require_cv2()
    flow, valid = flow_array(flow, valid, "write_kitti_png")
    uv = np.nan_to_num(flow, nan=0.0, posinf=0.0, neginf=0.0)
    enc = np.clip(np.rint(64.0 * uv + 2.0**15), 0, 65535).astype(np.uint16)
    rgb = np.zeros(flow.shape[:2] + (3,), np.uint16)
    rgb[:, :, :2] = enc
    rgb[:, :, 2] = valid
    rgb[~valid] = 0
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:  # pragma: no cover - OpenCV always encodes uint16 PNG
        raise FormatError("write_kitti_png: OpenCV failed to encode a 16-bit PNG")
    return buf.tobytes()


def write_kitti_png(path, flow, valid=None):
    """Write ``flow`` ``(H, W, 2)`` as a KITTI 16-bit PNG (atomically)."""
    return atomic_write_bytes(path, encode_kitti_png(flow, valid))
