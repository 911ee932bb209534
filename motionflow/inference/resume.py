"""Resume of a video-file job: the run manifest (what makes two runs the same) and the run's progress.

Two files in the output folder:

* ``estimate_manifest.json`` -- the identity of the run: motionflow version, the method (its name and
  every option, networks' weights by SHA-256 of their tensors), the flow format, ``max_size``, ``viz``
  and the source. Written before the first flow; a resume with another identity is refused with a
  message that names what changed (:func:`check_manifest`).
* ``estimate_state.resume`` (an npz archive) -- the progress (:class:`Progress`): the first frame of the next clip, the
  warm start the method gets there (the previous clip's last flow at processing resolution, for
  methods with ``accepts_prev_flow``), the unreadable frames so far, seconds, sessions, and whether the
  run finished. Replaced atomically after every clip whose flows are all written, so a resumed run
  starts at a clip boundary of the interrupted one, in the same state, and writes the same bytes.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import io
import json
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import FormatError

__all__ = ["MANIFEST", "STATE", "Progress", "describe", "run_identity", "check_manifest", "write_manifest",
           "read_progress", "write_progress"]

MANIFEST = "estimate_manifest.json"
STATE = "estimate_state.resume"  # an npz archive; not named .npz, which a flow format uses
LOCK = "estimate.lock"  # held for a run (motionflow.io.lock): a second run on the same folder is refused
_MAX_DEPTH = 4


def _qualname(obj) -> str:
    """``module.qualname`` of a class or function, or of an object's class."""
    kind = obj if isinstance(obj, type) or _is_function(obj) else type(obj)
    return f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', type(kind).__name__)}"


def _is_function(value) -> bool:
    return isinstance(value, (types.FunctionType, types.BuiltinFunctionType, types.MethodType, functools.partial))


def _array_digest(array: np.ndarray) -> dict:
    array = np.ascontiguousarray(array)
    return {"dtype": str(array.dtype), "shape": list(array.shape), "sha256": hashlib.sha256(array.tobytes()).hexdigest()}


def _weights_digest(module) -> dict:
    """SHA-256 over a module's state dict (names, dtypes, shapes and bytes, in order)."""
    import torch

    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return {"type": _qualname(module), "weights_sha256": h.hexdigest()}


def describe(value: Any, depth: int = 0) -> Any:
    """A JSON-able, deterministic description of ``value`` (a method object and what it holds).

    Plain values are kept; paths, devices and enums become strings; dataclasses and objects become
    ``{"type": module.qualname, <public attribute>: description...}`` (attributes starting with ``_``
    are skipped, nesting stops at depth 4); ``nn.Module`` weights and arrays enter by SHA-256;
    functions and classes by their qualified name. An object with a ``describe()`` method (networks:
    name, iters, precision, weights SHA-256; ``classical``: preset and config) describes itself, under
    its ``type`` and ``name``.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (Path, enum.Enum)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [describe(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k): describe(v, depth + 1) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, np.ndarray):
        return _array_digest(value)
    torch = sys.modules.get("torch")  # torch values exist only once torch is imported
    if torch is not None:
        if isinstance(value, torch.nn.Module):
            return _weights_digest(value)
        if isinstance(value, torch.Tensor):
            return _array_digest(value.detach().cpu().numpy())
        if isinstance(value, (torch.device, torch.dtype)):
            return str(value)
    if isinstance(value, type) or _is_function(value):
        return _qualname(value)
    if callable(getattr(value, "describe", None)):  # the object says what makes its numbers
        own = describe(value.describe(), depth + 1)
        head = {"type": _qualname(value), "name": getattr(value, "name", None)}
        return {**head, **own} if isinstance(own, dict) else {**head, "description": own}
    if depth >= _MAX_DEPTH:
        return _qualname(value)
    if dataclasses.is_dataclass(value):
        attrs = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    elif hasattr(value, "__dict__"):
        attrs = dict(vars(value))
        for name in ("name", "clip_length"):  # class-level method attributes (registry.py)
            if hasattr(value, name):
                attrs.setdefault(name, getattr(value, name))
    else:
        return _qualname(value)
    out = {"type": _qualname(value)}
    out.update({k: describe(v, depth + 1) for k, v in sorted(attrs.items()) if not k.startswith("_")})
    return out


def run_identity(method, src, fmt: str, max_size: Optional[int], viz: bool) -> dict:
    """What makes two video-file jobs the same run (the manifest's ``identity``)."""
    from .. import __version__

    if src.files is not None:
        names = "\n".join(str(f.resolve()) for f in src.files)
        source = {"kind": "images", "frames": len(src.files), "files_sha256": hashlib.sha256(names.encode()).hexdigest()}
    else:
        source = {"kind": "video", "path": str(Path(src.path).resolve()), "bytes": Path(src.path).stat().st_size}
    return {
        "motionflow": __version__,
        "method": describe(method),
        "format": fmt,
        "max_size": max_size,
        "viz": bool(viz),
        "source": source,
    }


def _diff(old: Any, new: Any, where: str = "") -> list[str]:
    """Leaf paths where two descriptions differ, as ``"where: old -> new"``."""
    if isinstance(old, dict) and isinstance(new, dict):
        if old.get("type") != new.get("type"):  # another kind of object: name it, not its every field
            return [f"{where}: {old.get('name', old.get('type'))} -> {new.get('name', new.get('type'))}"]
        out = []
        for k in sorted(set(old) | set(new)):
            sub = f"{where}.{k}" if where else k
            if k not in old:
                out.append(f"{sub}: (absent) -> {_short(new[k])}")
            elif k not in new:
                out.append(f"{sub}: {_short(old[k])} -> (absent)")
            else:
                out.extend(_diff(old[k], new[k], sub))
        return out
    return [] if old == new else [f"{where}: {_short(old)} -> {_short(new)}"]


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def check_manifest(out: Path, identity: dict, has_outputs: bool) -> bool:
    """Compare the run in ``out`` with ``identity``; returns True when ``out`` holds this run.

    Raises:
        FormatError: ``out`` holds another run (the message names what changed), a manifest that is
            not one, or flow files without a manifest; each says how to start over.
    """
    path = out / MANIFEST
    start_over = ("rerun with the same options to resume, or start over with --no-resume (resume=False in Python), "
                  "or use another --out")
    if not path.exists():
        if has_outputs:
            raise FormatError(
                f"{out}: expected a folder of an estimate run, found flow files without {MANIFEST} "
                f"(written by another tool or an older motionflow); {start_over}"
            )
        return False
    try:
        old = json.loads(path.read_text())["identity"]
        if not isinstance(old, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise FormatError(f"{path}: expected an estimate run manifest (JSON with 'identity'), found other content; {start_over}") from None
    changes = _diff(old, identity)
    if changes:
        more = f" (and {len(changes) - 4} more)" if len(changes) > 4 else ""
        raise FormatError(
            f"{out}: expected a resume of the same run, found that {'; '.join(changes[:4])}{more}; {start_over}"
        )
    return True


def write_manifest(out: Path, identity: dict, info: dict) -> None:
    """Write ``out / MANIFEST`` (``identity`` and informative ``info`` such as the checkpoint path)."""
    from ..io import atomic_write_bytes

    text = json.dumps({"identity": identity, "info": info}, indent=2, sort_keys=True)
    atomic_write_bytes(out / MANIFEST, text.encode())


@dataclass
class Progress:
    """How far a run got (``out / STATE``).

    Attributes:
        next: index of the first frame of the next clip (the last frame of the clip before it).
        complete: the run read its source to the end.
        warm_start: ``(1, 2, h, w)`` float32, the previous clip's last flow at processing resolution,
            or None (no warm start: a pairwise method, or a chain break before ``next``).
        unreadable: ``{index: why}`` of the unreadable frames before ``next``.
        seconds: compute time of all sessions so far.
        sessions: sessions that worked on the run, this one included once it saved progress.
    """

    next: int = 0
    complete: bool = False
    warm_start: Optional[np.ndarray] = None
    unreadable: dict = field(default_factory=dict)
    seconds: float = 0.0
    sessions: int = 0


def read_progress(out: Path) -> Optional[Progress]:
    """The progress saved in ``out``, or None when there is none."""
    path = out / STATE
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            info = json.loads(str(z["progress"]))
            warm = np.array(z["warm_start"], dtype=np.float32) if "warm_start" in z.files else None
        return Progress(next=int(info["next"]), complete=bool(info["complete"]), warm_start=warm,
                        unreadable={int(i): str(why) for i, why in info["unreadable"].items()}, seconds=float(info["seconds"]),
                        sessions=int(info["sessions"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise FormatError(
            f"{path}: expected the progress of an estimate run, found unreadable content ({exc}); "
            "rerun with --no-resume to recompute every flow"
        ) from None


def write_progress(out: Path, progress: Progress) -> None:
    """Replace ``out / STATE`` atomically with ``progress``."""
    from ..io import atomic_write_bytes

    info = {k: getattr(progress, k) for k in ("next", "complete", "seconds", "sessions")}
    info["unreadable"] = {str(i): why for i, why in sorted(progress.unreadable.items())}
    arrays = {"progress": np.array(json.dumps(info))}
    if progress.warm_start is not None:
        arrays["warm_start"] = np.ascontiguousarray(progress.warm_start, dtype=np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(out / STATE, buffer.getvalue())
