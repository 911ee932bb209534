"""Typed errors raised by motionflow.

Every error message names the offending file or argument, what was expected and what was found.
Errors subclass the built-in exception a caller would naturally catch (``ValueError`` for bad
values, ``FileNotFoundError`` for missing data, ``ImportError`` for missing packages).
"""

from __future__ import annotations


class MotionflowError(Exception):
    """Base class of every error motionflow raises on purpose."""


class FormatError(MotionflowError, ValueError):
    """A file's content does not match its format (bad magic, truncated data, wrong bit depth...)."""


class ShapeError(MotionflowError, ValueError):
    """An array or tensor argument has the wrong shape, dtype or value range."""


class DatasetNotFoundError(MotionflowError, FileNotFoundError):
    """A dataset root, split or required sub-folder does not exist."""


class CheckpointError(MotionflowError, ValueError):
    """A checkpoint does not match the network: missing, unexpected or mis-shaped keys."""


class MissingDependencyError(MotionflowError, ImportError):
    """An optional dependency is not installed; the message says which pip package to install."""


class UnknownNameError(MotionflowError, ValueError):
    """An unknown method, dataset or option name; the message lists the valid choices."""


def require(module: str, pip_name: str | None = None, hint: str = ""):
    """Import an optional dependency lazily.

    Args:
        module: the module to import, e.g. ``"open3d"``.
        pip_name: the pip package that provides it (defaults to ``module``).
        hint: extra advice appended to the message (e.g. a system library to install).

    Raises:
        MissingDependencyError: if the import fails, naming the pip package to install.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            f"motionflow needs the optional package '{pip_name or module}' for this feature "
            f"(import {module!r} failed: {exc}); install it with: pip install {pip_name or module}"
            + (f"; {hint}" if hint else "")
        ) from exc


def require_open3d():
    """Import open3d lazily (``open3d-cpu`` on Linux x86_64; needs the system library libusb-1.0-0)."""
    return require(
        "open3d",
        "open3d-cpu",
        hint="on Debian/Ubuntu open3d also needs the system library: apt-get install -y libusb-1.0-0",
    )


def require_cv2():
    """Import OpenCV lazily (the ``opencv-python-headless`` wheel)."""
    return require("cv2", "opencv-python-headless")
