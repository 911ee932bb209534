"""File formats, numpy in and out (no torch here).

Optical flow: :func:`read_flow` / :func:`write_flow` dispatch on the suffix (``.flo``, KITTI ``.png``,
``.pfm``, ``.npy``, ``.npz``) and return ``(flow (H, W, 2) float32, valid (H, W) bool)``.
Images: :func:`read_image` / :func:`write_image` (``(H, W, 3)`` uint8 RGB). Sintel masks:
:func:`read_sintel_mask`. Point clouds: :func:`read_points` / :func:`write_points` (``.bin``,
``.npy``, ``.npz``, ``.pcd``, ``.ply``, ``.feather``). Video frames: :mod:`motionflow.io.video`.

Every reader raises :class:`motionflow.errors.FormatError` (a ``ValueError``) naming the file, what
was expected and what was found. Every writer writes atomically (temporary file + ``os.replace``).
"""

from __future__ import annotations

from .atomic import atomic_path, atomic_write_bytes
from .flo import read_flo, write_flo
from .flow import FLOW_SUFFIXES, read_flow, write_flow
from .image import IMAGE_SUFFIXES, read_image, write_image
from .kitti_png import read_kitti_png, write_kitti_png
from .masks import read_sintel_mask, write_sintel_mask
from .pfm import read_pfm, read_pfm_flow, write_pfm, write_pfm_flow
from .points import (
    POINT_SUFFIXES,
    finite_rows,
    read_feather,
    read_points,
    read_velodyne_bin,
    write_feather,
    write_points,
)

_VIDEO_NAMES = ("list_frame_files", "iter_frames")


def __getattr__(name):
    # motionflow.io.video is imported on first use of its names (it may pull in OpenCV's video code).
    if name in _VIDEO_NAMES:
        from . import video

        return getattr(video, name)
    raise AttributeError(f"module 'motionflow.io' has no attribute {name!r}")


__all__ = [
    "FLOW_SUFFIXES",
    "IMAGE_SUFFIXES",
    "POINT_SUFFIXES",
    "atomic_path",
    "atomic_write_bytes",
    "finite_rows",
    "iter_frames",
    "list_frame_files",
    "read_feather",
    "read_flo",
    "read_flow",
    "read_image",
    "read_kitti_png",
    "read_pfm",
    "read_pfm_flow",
    "read_points",
    "read_sintel_mask",
    "read_velodyne_bin",
    "write_feather",
    "write_flo",
    "write_flow",
    "write_image",
    "write_kitti_png",
    "write_pfm",
    "write_pfm_flow",
    "write_points",
    "write_sintel_mask",
]
