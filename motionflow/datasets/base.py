"""What every loader shares: root/split validation, indexing, ``max_samples``, frame stacking.

A loader lists its samples at construction (file names only: no pixel or point data is read) and
loads one sample per ``__getitem__``. Subclasses set ``name`` and ``kind`` (``"optical"`` or
``"scene"``) and implement ``_index()`` (the list of per-sample records, each with an ``id``) and
``_load(record)``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

from ..errors import DatasetNotFoundError, FormatError, ShapeError, UnknownNameError

_NUM = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key that orders ``frame2`` before ``frame10``."""
    return tuple(int(t) if t.isdigit() else t.lower() for t in _NUM.split(str(name)))


def require_dir(path: Path, what: str, looked_for: Optional[Sequence] = None) -> Path:
    """Return ``path`` if it is a directory, else raise DatasetNotFoundError listing what was looked for."""
    path = Path(path)
    if not path.is_dir():
        places = [str(p) for p in (looked_for or [path])]
        raise DatasetNotFoundError(
            f"{what}: expected a directory, found {'a file' if path.is_file() else 'nothing'} at {path}"
            + (f"; looked for: {', '.join(places)}" if looked_for else "")
        )
    return path


def check_choice(argument: str, value, choices: Iterable) -> None:
    """Raise UnknownNameError unless ``value`` is one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise UnknownNameError(f"{argument}: expected one of {choices}, found {value!r}")


def stack_frames(images: Sequence[np.ndarray], paths: Sequence) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB images -> ``(T, 3, H, W)``; raise FormatError naming a file whose size differs."""
    h, w = images[0].shape[:2]
    for img, p in zip(images, paths):
        if img.shape[:2] != (h, w):
            raise FormatError(
                f"{p}: expected a frame of {w}x{h} like {paths[0]}, found {img.shape[1]}x{img.shape[0]}"
            )
    return np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2))


def check_flow_size(flow: np.ndarray, path, h: int, w: int) -> None:
    if flow.shape[:2] != (h, w):
        raise FormatError(f"{path}: expected a flow of {w}x{h} like its frames, found {flow.shape[1]}x{flow.shape[0]}")


def centered_window(target: int, frames: int, first: int, last: int) -> int:
    """First frame number of a window of ``frames`` frames that contains the pair ``target -> target+1``
    as centred as the clip allows, clamped to ``[first, last]``.

    The pair sits at position ``(frames - 1) // 2`` of the window (T=2: the pair itself; T=3: frames
    t-1, t, t+1 as in VideoFlow's three-frame model; T=5: t-2 .. t+2 as in VideoFlow MOF).
    """
    start = target - (frames - 1) // 2
    start = min(start, last - frames + 1)
    return max(start, first)


def tile_windows(numbers: Sequence[int], frames: int) -> list[tuple[int, tuple]]:
    """Cover the pairs of consecutive ``numbers`` with windows of ``frames`` frames, every pair scored once.

    Windows start every ``frames - 1`` frames (consecutive windows share their end frame); the last
    window is aligned to the end of the run and scores only the pairs not scored before. A run shorter
    than ``frames`` gives one shorter window. Returns ``(start position, pair positions in the window)``.
    """
    n = len(numbers)
    if n < 2:
        return []
    if n <= frames:
        return [(0, tuple(range(n - 1)))]
    out, step, pos = [], frames - 1, 0
    while pos + frames <= n:
        out.append((pos, tuple(range(frames - 1))))
        pos += step
    if pos < n - 1:  # pairs pos .. n-2 not yet scored
        start = n - frames
        out.append((start, tuple(range(pos - start, frames - 1))))
    return out


def consecutive_runs(numbers: Sequence[int]) -> list[list[int]]:
    """Split sorted frame numbers into runs without gaps (a gap ends a clip like a scene boundary)."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return runs


class Dataset:
    """Base of every loader: a sequence of samples with stable ids.

    Args:
        root: the dataset root folder.
        split: the split name (each loader lists its own).
        max_samples: keep only the first ``max_samples`` samples (in the loader's stable order).
    """

    name = ""
    kind = ""  # "optical" or "scene"
    splits: tuple = ()

    def __init__(self, root, split, max_samples: Optional[int] = None):
        self.root = Path(root) if root is not None else None
        if self.splits:
            check_choice(f"{self.name} split", split, self.splits)
        self.split = split
        if max_samples is not None and (not isinstance(max_samples, (int, np.integer)) or max_samples < 0):
            raise ShapeError(f"max_samples: expected a non-negative integer or None, found {max_samples!r}")
        records = self._index()
        if max_samples is not None:
            records = records[: int(max_samples)]
        self._records = records

    # -- subclass interface ---------------------------------------------------------------------
    def _index(self) -> list[dict]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _load(self, record: dict):  # pragma: no cover - abstract
        raise NotImplementedError

    # -- sequence protocol ----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int):
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"{self.name} index: expected an int, found {type(index).__name__}")
        n = len(self._records)
        if not -n <= index < n:
            raise IndexError(f"{self.name}: index {index} out of range for {n} samples")
        return self._load(self._records[int(index) % n])

    def __iter__(self) -> Iterator:
        for i in range(len(self)):
            yield self[i]

    @property
    def ids(self) -> list[str]:
        """The sample ids in order (no data is read)."""
        return [r["id"] for r in self._records]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, root={str(self.root)!r}, split={self.split!r}, samples={len(self)})"
