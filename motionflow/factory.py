"""Building a registered thing (a method, a dataset loader) from user keyword options, with one-line
errors: an option the factory does not take names the valid ones, and a value it refuses is a
:class:`~motionflow.errors.ShapeError` naming what was being built (never a bare ``TypeError``)."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable

from .errors import MotionflowError, ShapeError, UnknownNameError


def check_options(factory: Callable[..., Any], options: Iterable[str], what: str, fixed: tuple = ()) -> None:
    """Refuse keyword ``options`` that ``factory`` does not take (unless it takes ``**kwargs``).

    Args:
        what: how the message names the thing, e.g. ``"scene-flow method 'nsfp'"``.
        fixed: parameters the caller passes itself (``root``, ``split``): not offered to the user.

    Raises:
        UnknownNameError: ``"<what>: unknown option 'x'; valid options: a, b"``.
    """
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # no signature to read: the call decides
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = [k for k, p in params.items()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and k not in ("self", *fixed)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise UnknownNameError(f"{what}: unknown option {', '.join(map(repr, unknown))}; "
                               f"valid options: {', '.join(valid) or '(none)'}")


def build(factory: Callable[..., Any], options: dict, what: str, *args: Any, checked: bool = False) -> Any:
    """``factory(*args, **options)`` after :func:`check_options` (``checked=True``: the caller ran it); a
    plain ``TypeError`` / ``ValueError`` raised while building with user options becomes a
    :class:`ShapeError` naming ``what`` and them."""
    if not checked:
        check_options(factory, options, what)
    try:
        return factory(*args, **options)
    except MotionflowError:
        raise
    except (TypeError, ValueError) as exc:
        if not options:
            raise
        raise ShapeError(f"{what} with options {options!r}: {exc}") from exc


__all__ = ["build", "check_options"]
