"""Dropping non-finite points (Argoverse 2 exports pad clouds with NaN) with per-point labels kept aligned."""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import FormatError


def keep_rows(points: np.ndarray, *per_point: Optional[np.ndarray]):
    """Remove rows of ``points`` ``(N, 3)`` with a non-finite coordinate, and the same rows of every
    ``(N, ...)`` array in ``per_point`` (None passes through).

    Returns:
        ``(kept_index, points, *per_point)``: ``kept_index`` ``(N',)`` int64 are the kept rows'
        positions in the file (what predictions on the returned points map back to).
    """
    keep = np.isfinite(points).all(axis=1)
    idx = np.flatnonzero(keep)
    if keep.all():
        return (idx, points, *per_point)
    return (idx, points[keep], *(None if a is None else np.asarray(a)[keep] for a in per_point))


def remap_mask(mask, kept_index: np.ndarray, n: int, what: str = "mask"):
    """Carry a per-point mask given as bool ``(n,)`` or as indices into the cloud over to the
    kept rows: returns a bool mask over the kept rows (None stays None).

    Raises:
        FormatError: a bool mask of another length, or indices outside ``[0, n)`` (``what`` names it).
    """
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.dtype == bool:
        if mask.shape != (n,):
            raise FormatError(f"{what}: expected a bool mask of shape ({n},) like its cloud, found {mask.shape}")
        full = mask
    else:
        idx = mask.astype(np.int64).ravel()
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise FormatError(f"{what}: expected point indices in [0, {n}), found {idx.min()}..{idx.max()}")
        full = np.zeros(n, bool)
        full[idx] = True
    return full[kept_index]
