"""Command-line option helpers: ``KEY=VALUE`` options (``--method-option``), positive integers, progress flags."""

from __future__ import annotations

import ast
from typing import Iterable


def parse_key_values(items: Iterable[str], flag: str) -> dict:
    """``["k=1", "name=fast"]`` -> ``{"k": 1, "name": "fast"}``.

    Values are Python literals when they parse as one (``8192``, ``0.2``, ``True``, ``(1, 2)``), else
    plain strings.

    Raises:
        ValueError: an item without ``=`` or with an empty key (the message names ``flag``).
    """
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag}: expected KEY=VALUE, found {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value  # a plain string
    return out


def positive_int(text: str) -> int:
    """argparse ``type=`` for counts and sizes that must be >= 1 (``--max-size``, ``--max-points``...):
    ``0`` or ``-3`` is bad usage (exit 2), with a message that says what was expected."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer (>= 1), found {value}")
    return value


def torch_device(text: str) -> str:
    """argparse ``type=`` for ``--device``: a torch device this machine has (``cpu``, ``cuda``,
    ``cuda:1``, ``mps``; ``auto`` where a command accepts it). A typo or a CUDA device on a machine
    without one is bad usage (exit 2) before anything is loaded."""
    import argparse

    if text == "auto":
        return text
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a torch device such as cpu or cuda, found {text!r}") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise argparse.ArgumentTypeError(f"expected a device this machine has, found {text!r} (no CUDA device)")
        if device.index is not None and device.index >= count:
            raise argparse.ArgumentTypeError(f"expected a CUDA device index below {count}, found {text!r}")
    elif device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise argparse.ArgumentTypeError(f"expected a device this machine has, found {text!r} (no MPS device)")
    return text


def add_progress_flags(parser) -> None:
    """``--progress`` / ``--quiet``: a progress bar on stderr by default when stderr is a terminal."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--progress", action="store_true", default=None,
                       help="show progress bars even when stderr is not a terminal")
    group.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true",
                       help="no progress bars (default when stderr is not a terminal)")


def show_progress(args) -> bool:
    """Whether to draw progress bars: ``--progress``, else not ``--quiet`` and stderr is a terminal."""
    import sys

    if getattr(args, "progress", None):
        return True
    if getattr(args, "quiet", False):
        return False
    return bool(getattr(sys.stderr, "isatty", lambda: False)())
