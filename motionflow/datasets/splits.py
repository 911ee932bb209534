"""Published split index lists shipped with motionflow (``motionflow/datasets/splits/*.json``).

Two different "KITTI 50 test pairs" exist for FlowNet3D's ``kitti_rm_ground`` set: NSFP / RigidFlow
take ``sorted(files)[100:]`` (``nsfp-test``), SCOOP takes 50 scattered file numbers (``scoop-test``).
Each list says whether its indices are positions in the sorted file list or file numbers.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Sequence

from ..errors import DatasetNotFoundError, FormatError, UnknownNameError


@lru_cache(maxsize=None)
def _table(filename: str) -> dict:
    text = resources.files(__package__).joinpath("splits", filename).read_text()
    return json.loads(text)


def split_names(filename: str) -> tuple:
    """The split names defined in ``splits/<filename>``."""
    return tuple(_table(filename)["splits"])


def select_split(filename: str, split: str, items: Sequence[Path], what: str) -> list:
    """Pick the members of ``split`` from ``items`` (sorted paths whose stems are the file numbers).

    Raises:
        UnknownNameError: ``split`` is not in the table.
        DatasetNotFoundError: the dataset does not have the files the published list needs.
    """
    table = _table(filename)["splits"]
    if split not in table:
        raise UnknownNameError(f"{what} split: expected one of {['all', *table]}, found {split!r}")
    entry = table[split]
    items = list(items)
    if entry["index"] == "sorted_position":
        total = entry.get("expect_total")
        if total is not None and len(items) != total:
            raise DatasetNotFoundError(
                f"{what} split {split!r}: the published list indexes a sorted list of {total} samples, "
                f"found {len(items)} samples"
            )
        return [items[i] for i in entry["indices"]]
    if entry["index"] == "file_number":
        by_number = {}
        for p in items:
            try:
                by_number[int(Path(p).stem)] = p
            except ValueError:
                raise FormatError(f"{p}: expected a numeric file name (NNNNNN) for split {split!r}") from None
        missing = [i for i in entry["indices"] if i not in by_number]
        if missing:
            raise DatasetNotFoundError(
                f"{what} split {split!r}: expected files numbered {missing[:10]}{'...' if len(missing) > 10 else ''}, found none"
            )
        return [by_number[i] for i in entry["indices"]]
    raise FormatError(f"splits/{filename}: unknown index kind {entry['index']!r}")  # pragma: no cover
