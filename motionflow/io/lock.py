"""One writer per output: an advisory lock file held for a run (``fcntl.flock``), so a second run on the
same output is refused instead of interleaving its files with the first's. The system releases the
lock of a crashed process; the lock file itself stays (removing it would race with a run opening it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from ..errors import FormatError


class OutputLock:
    """Hold ``path`` (created) for the ``with`` block; ``path=None`` holds nothing.

    Args:
        path: the lock file.
        what: how the refusal names the other run (``"evaluation"``, ``"estimate run"``).

    Raises:
        FormatError: another process holds it (``"<path>: another <what> is writing to this output ..."``).
    """

    def __init__(self, path: Optional[Path], what: str = "run"):
        self.path = None if path is None else Path(path)
        self.what = what
        self.fd = None

    def __enter__(self) -> "OutputLock":
        if self.path is None:
            return self
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory locks, no guard
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            self.fd = None
            raise FormatError(f"{self.path}: another {self.what} is writing to this output (its lock is held); wait "
                              "for it to finish or choose another --out") from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{os.getpid()}\n".encode())
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the flock
            self.fd = None


__all__ = ["OutputLock"]
