"""Images: PNG / JPEG / PPM in and out as ``(H, W, 3)`` uint8 RGB."""

from __future__ import annotations

import numpy as np

from ..errors import FormatError, ShapeError, require_cv2
from .atomic import atomic_write_bytes
from .checks import existing_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp")


def read_image(path) -> np.ndarray:
    """Read an image as ``(H, W, 3)`` uint8 RGB (grey images are replicated to 3 channels,
    alpha is dropped, 16-bit images are scaled to 8 bits by OpenCV).

    Raises:
        FormatError: missing file or a file OpenCV cannot decode.
    """
    cv2 = require_cv2()
    path = existing_file(path)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FormatError(
            f"{path}: expected an image OpenCV can decode ({', '.join(IMAGE_SUFFIXES)}), "
            "found undecodable content"
        )
    return np.ascontiguousarray(bgr[:, :, ::-1])


def write_image(path, image) -> object:
    """Write ``(H, W, 3)`` RGB or ``(H, W)`` grey uint8 to ``path`` (format from the suffix), atomically."""
    cv2 = require_cv2()
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ShapeError(f"write_image {path}: expected uint8 pixels, found {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 3:
        img = img[:, :, ::-1]
    elif img.ndim != 2:
        raise ShapeError(f"write_image {path}: expected (H, W, 3) or (H, W), found {img.shape}")
    suffix = str(path)[str(path).rfind(".") :].lower() if "." in str(path) else ""
    if suffix not in IMAGE_SUFFIXES:
        raise FormatError(
            f"{path}: expected an image suffix ({', '.join(IMAGE_SUFFIXES)}), found {suffix or 'none'!r}"
        )
    ok, buf = cv2.imencode(suffix, np.ascontiguousarray(img))
    if not ok:  # pragma: no cover
        raise FormatError(f"{path}: OpenCV failed to encode the image as {suffix}")
    return atomic_write_bytes(path, buf.tobytes())
