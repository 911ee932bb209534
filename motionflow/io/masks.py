"""Binary masks stored as 8-bit images (MPI-Sintel ``occlusions/`` and ``invalid/``: 255 = True)."""

from __future__ import annotations

import numpy as np

from ..errors import FormatError, ShapeError, require_cv2
from .atomic import atomic_write_bytes
from .checks import existing_file


def read_sintel_mask(path) -> np.ndarray:
    """Read a Sintel occlusion / invalid mask as ``(H, W)`` bool: True where the pixel is 255.

    Values are thresholded at 128 (the files hold only 0 and 255; a colour file is read as grey).

    Raises:
        FormatError: missing or undecodable file.
    """
    cv2 = require_cv2()
    path = existing_file(path)
    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if grey is None:
        raise FormatError(f"{path}: expected an 8-bit mask image, OpenCV could not decode it")
    return grey >= 128


def write_sintel_mask(path, mask):
    """Write a bool ``(H, W)`` mask as an 8-bit PNG with 255 = True (atomically)."""
    cv2 = require_cv2()
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ShapeError(f"write_sintel_mask {path}: expected a mask (H, W), found {mask.shape}")
    ok, buf = cv2.imencode(".png", (mask.astype(bool) * 255).astype(np.uint8))
    if not ok:  # pragma: no cover
        raise FormatError(f"{path}: OpenCV failed to encode the mask")
    return atomic_write_bytes(path, buf.tobytes())
