"""Per-sample records of an evaluation: what a run is (its fingerprint), reading, writing, resuming.

Every finished sample is appended to a JSONL file (``<report stem>.samples.jsonl``) the moment it
arrives, so an interrupted run loses nothing. The first line is a header holding the run's
**fingerprint**, its content identity: the motionflow version and git commit, the protocol (with every
option that changes a number), the dataset (class, name, absolute root, split, every loader option, a
SHA-256 of the sample-id list) and the method (name and every option; the checkpoint file's size and
modification time; for a method object its ``describe()``, which for a network includes a digest of
its weights) or the predictions folder. A rerun resumes only when its fingerprint equals the header;
otherwise it refuses with a message that names what changed and points to ``--no-resume``.

Records also carry a manifest of the prediction files they read or wrote (size and ``mtime_ns``): on
resume a record whose files changed or vanished is computed again. A lock file (``<stem>.lock``,
``fcntl.flock``) refuses a second concurrent run on the same output; a crashed run's lock is released
by the system. A torn last line (a crash mid-write) is dropped; any other malformed line raises a
:class:`~motionflow.errors.FormatError` naming the file and line.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional

from ..errors import FormatError
from ..io.strict_json import json_safe

RECORDS_VERSION = 2
RECORD_KEYS = {"index": int, "id": str, "metrics": dict, "partial": dict}


# -- identities ------------------------------------------------------------------------------------
def file_identity(path) -> dict:
    """``{"path", "size", "mtime_ns"}`` of a file (``exists: False`` when it is missing)."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return {"path": str(path.resolve()), "exists": False}
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _plain(value):
    """A JSON-stable description of an option value."""
    if isinstance(value, os.PathLike):
        return str(Path(value).resolve())
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "describe"):
        return _plain(value.describe())
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return _plain(asdict(value))
    return repr(value)


def _simple(value, depth: int = 0) -> bool:
    """Scalars, paths, and small containers / dataclasses of them (no arrays, tensors, samples or modules)."""
    if isinstance(value, (bool, int, float, str, os.PathLike)) or value is None:
        return True
    if depth > 3 or hasattr(value, "shape") or hasattr(value, "state_dict"):
        return False
    if isinstance(value, (list, tuple)):
        return len(value) <= 64 and all(_simple(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return len(value) <= 64 and all(isinstance(k, str) and _simple(v, depth + 1) for k, v in value.items())
    if hasattr(value, "__dataclass_fields__"):
        return all(_simple(getattr(value, f), depth + 1) for f in value.__dataclass_fields__)
    return False


def describe_object(obj) -> dict:
    """What a method or dataset object is: its ``describe()`` when it has one, else its class, name and the
    simple attributes of ``vars(obj)`` (options; arrays, tensors, samples and modules are left out)."""
    cls = f"{type(obj).__module__}.{type(obj).__qualname__}"
    if hasattr(obj, "describe"):
        return {"class": cls, **_plain(obj.describe())}
    attrs = {k: _plain(v) for k, v in sorted(getattr(obj, "__dict__", {}).items()) if not k.startswith("_") and _simple(v)}
    return {"class": cls, "name": getattr(obj, "name", None), "attributes": attrs}


def dataset_descriptor(dataset, name: str, root, split, options: dict, by_name: bool) -> dict:
    """Class, name, root, split, every option and the SHA-256 of the sample-id list."""
    ids = getattr(dataset, "ids", None)
    if ids is None:
        ids = [dataset[i].id for i in range(len(dataset))]
    out = {
        "class": f"{type(dataset).__module__}.{type(dataset).__qualname__}",
        "name": name,
        "root": None if root is None else str(Path(root).resolve()),
        "split": split,
        "options": {k: _plain(v) for k, v in sorted(options.items())},
        "num_samples": len(ids),
        "ids_sha256": hashlib.sha256("\n".join(map(str, ids)).encode("utf-8")).hexdigest(),
    }
    if not by_name:
        out["object"] = describe_object(dataset)
    return out


def method_descriptor(method, options: dict, predictions) -> dict:
    """A registered method (name + options, checkpoint identity), a method object, or a predictions folder."""
    if predictions is not None:
        return {"predictions": str(Path(predictions).resolve())}
    if isinstance(method, str):
        out = {"name": method, "options": {k: _plain(v) for k, v in sorted(options.items())}}
        if isinstance(options.get("checkpoint"), (str, os.PathLike)):  # another file under the same name
            out["checkpoint"] = file_identity(options["checkpoint"])
        return out
    return {"name": getattr(method, "name", type(method).__name__), "object": describe_object(method)}


def fingerprint(protocol: dict, dataset: dict, method: dict, write_predictions) -> dict:
    from .. import __version__
    from .report import git_sha

    return {
        "records_version": RECORDS_VERSION,
        "motionflow": __version__,
        "git_sha": git_sha(),
        "protocol": protocol,
        "dataset": dataset,
        "method": method,
        # a resumed sample is not predicted again: its flow file would be missing if a rerun asked for
        # prediction files the first run did not write
        "write_predictions": None if write_predictions is None else str(Path(write_predictions).resolve()),
    }


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two fingerprints differ (``method.options.iters: 12 -> 24``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                out.append(f"{path} ({'added' if key not in old else 'removed'})")
            else:
                out += changed_keys(old[key], new[key], path)
        return out
    if old == new:
        return []
    return [f"{prefix}: {_short(old)} -> {_short(new)}"]


def _short(value) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 48 else text[:22] + "..." + text[-22:]


# -- the records file ------------------------------------------------------------------------------
def records_path(out, records) -> Optional[Path]:
    if records is not None:
        return Path(records)
    if out is not None:
        out = Path(out)
        return out.with_name(out.stem + ".samples.jsonl")
    return None


def _check_record(path: Path, line_no: int, item) -> None:
    if not isinstance(item, dict):
        raise FormatError(f"{path}: line {line_no}: expected a JSON object (a record), found {type(item).__name__}; "
                          "delete the file or pass resume=False (--no-resume)")
    if "header" in item:
        return
    for key, kind in RECORD_KEYS.items():
        if not isinstance(item.get(key), kind) or isinstance(item.get(key), bool):
            found = "nothing" if key not in item else type(item[key]).__name__
            raise FormatError(f"{path}: line {line_no}: expected record key {key!r} ({kind.__name__}), found {found}; "
                              "delete the file or pass resume=False (--no-resume)")


def read_records(path: Path, header: dict) -> dict:
    """Finished records by index (the last one of an index wins); a torn last line is dropped.

    Raises:
        FormatError: a malformed line, or records of another evaluation (the message names what changed).
    """
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    records, good = {}, []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            if i >= len(lines) - 2:  # a torn final write from a crash: drop it
                break
            raise FormatError(f"{path}: line {i + 1} is not valid JSON (the records file is corrupt; delete it or pass "
                              "resume=False (--no-resume))") from None
        _check_record(path, i + 1, item)
        if "header" in item:
            if item["header"] != json_safe(header):
                changes = changed_keys(item["header"], json_safe(header)) or ["the header"]
                shown = "; ".join(changes[:6]) + (f"; and {len(changes) - 6} more" if len(changes) > 6 else "")
                raise FormatError(f"{path}: holds records of another evaluation ({shown}); pass --no-resume "
                                  "(resume=False) to start over, or choose another --out")
        else:
            records[int(item["index"])] = item
        good.append(line)
    clean = "\n".join(good) + ("\n" if good else "")
    if clean != text:
        from ..io import atomic_write_bytes

        atomic_write_bytes(path, clean.encode("utf-8"))
    return records


class RecordWriter:
    """Appends records (strict JSON, NaN -> null, flushed and fsynced line by line). A new file gets the
    header with its first record, so a run that fails before it scores anything (a method that cannot
    be built, a typo in an option) leaves no file that would refuse the corrected rerun."""

    def __init__(self, path: Optional[Path], header: dict):
        self.path, self.fh, self.header = path, None, None
        if path is not None and (not path.exists() or path.stat().st_size == 0):
            self.header = header

    def _write(self, item: dict) -> None:
        self.fh.write(json.dumps(json_safe(item), allow_nan=False) + "\n")
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def write(self, record: dict) -> None:
        if self.path is None:
            return
        if self.fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fh = open(self.path, "a", encoding="utf-8")
        if self.header is not None:
            self._write({"header": self.header})
            self.header = None
        self._write(record)

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()


# -- resume checks ---------------------------------------------------------------------------------
def check_resumed_ids(dataset, done: dict, path) -> None:
    """Raise FormatError when a resumed record's id is not the dataset's sample at that index."""
    ids = getattr(dataset, "ids", None)
    if ids is None or not done:
        return
    for i in sorted(done):
        if done[i]["id"] != ids[i]:
            raise FormatError(
                f"{path}: record {i} is sample {done[i]['id']!r} but the dataset's sample {i} is now {ids[i]!r} "
                "(the dataset changed since that run); delete the file or pass resume=False (--no-resume)"
            )


def manifest(directory, names) -> dict:
    """``{relative name: [size, mtime_ns]}`` of prediction files (``None`` for a missing one)."""
    out = {}
    for name in names:
        try:
            st = (Path(directory) / name).stat()
            out[str(name)] = [st.st_size, st.st_mtime_ns]
        except OSError:
            out[str(name)] = None
    return out


def stale_records(done: dict, directory) -> list[int]:
    """Indices of resumed records whose prediction files changed, vanished or were never listed."""
    if directory is None:
        return []
    stale = []
    for index, record in done.items():
        listed = record.get("files")
        if not isinstance(listed, dict) or not listed or manifest(directory, listed) != listed:
            stale.append(index)
    return sorted(stale)


def run_lock(records: Optional[Path]):
    """The evaluation's lock: ``<stem>.lock`` beside the records file (:class:`motionflow.io.lock.OutputLock`)."""
    from ..io.lock import OutputLock

    path = None if records is None else records.with_name(records.name.replace(".samples.jsonl", "") + ".lock")
    return OutputLock(path, "evaluation")


__all__ = [
    "RECORDS_VERSION", "RecordWriter", "run_lock", "changed_keys", "check_resumed_ids", "dataset_descriptor",
    "describe_object", "file_identity", "fingerprint", "manifest", "method_descriptor", "read_records",
    "records_path", "stale_records",
]
