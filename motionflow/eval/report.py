"""Evaluation reports: JSON (DESIGN.md section 6), CSV and a markdown table, plus the environment.

JSON schema::

    {
      "dataset": "sintel", "split": "training", "method": "raft" | "predictions:DIR",
      "protocol": {...},                       # kind, default reductions, eps, AV2 on/off, notes,
                                               # dataset_options (e.g. Sintel's pass_name) when given
      "metrics": {NAME: {"value": float|null, "reduction": "pixel"|"image"|"sample"|"point"|"class",
                         "unit": "px"|"%"|"fraction"|"m"|"rad"|"ratio",
                         "alternatives": {OTHER_REDUCTION: float|null}, ...}},
      "num_samples": int,
      "per_sample": [{"id": str, "index": int, "metrics": {NAME: float|null}, "seconds": float}],
      "runtime": {"seconds_per_sample": float,        # the method call (or prediction read), mean
                  "wall_seconds_per_sample": float,   # load + predict + score, mean
                  "total_seconds_this_run": float, "samples_this_run": int, "samples_resumed": int,
                  "peak_rss_mb": float,               # max over the processes' peak resident memory
                  "peak_cuda_mb": float|null, "engine": "local"|"ray", "workers": int},
      "environment": {"motionflow", "torch", "numpy", "python", "platform", "device", "git_sha"}
    }

NaN is written as ``null`` (JSON has no NaN). Files are written atomically, the JSON (the source of
truth) last: a crash while writing leaves either no JSON or one whose CSV and markdown are complete.
Every string that comes from data (dataset, split, method, options, notes) is escaped: markdown table
pipes and newlines, and a CSV cell starting with ``=``, ``+``, ``-``, ``@`` (or a tab / carriage
return) is prefixed with ``'`` so a spreadsheet shows it as text instead of running it as a formula.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..io.strict_json import json_safe


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_MARKDOWN_SPECIAL = "\\`*[]<>|"


def csv_text(value) -> str:
    """A data string as a CSV cell that a spreadsheet shows as text (never runs it as a formula)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def markdown_text(value) -> str:
    """A data string as inline markdown text: special characters (table pipes included) escaped,
    newlines folded into spaces."""
    text = " ".join(("" if value is None else str(value)).splitlines())
    return "".join("\\" + c if c in _MARKDOWN_SPECIAL else c for c in text)


@dataclass
class Report:
    """The result of :func:`motionflow.eval.evaluate`."""

    dataset: str
    split: str | None
    method: str
    metrics: dict
    per_sample: list = field(default_factory=list)
    runtime: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    protocol: dict = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        return len(self.per_sample)

    def value(self, name: str) -> float:
        """The default-reduction value of metric ``name`` (NaN when it was null)."""
        v = self.metrics[name]["value"]
        return float("nan") if v is None else float(v)

    def to_dict(self) -> dict:
        return json_safe(
            {
                "dataset": self.dataset,
                "split": self.split,
                "method": self.method,
                "protocol": self.protocol,
                "metrics": self.metrics,
                "num_samples": self.num_samples,
                "per_sample": self.per_sample,
                "runtime": self.runtime,
                "environment": self.environment,
            }
        )

    @classmethod
    def from_dict(cls, data: dict) -> "Report":
        return cls(
            dataset=data["dataset"],
            split=data.get("split"),
            method=data["method"],
            metrics=data["metrics"],
            per_sample=data.get("per_sample", []),
            runtime=data.get("runtime", {}),
            environment=data.get("environment", {}),
            protocol=data.get("protocol", {}),
        )

    @classmethod
    def load(cls, path) -> "Report":
        return cls.from_dict(json.loads(Path(path).read_text()))

    # -- renderings ------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def _rows(self):
        for name, entry in self.metrics.items():
            alts = entry.get("alternatives") or {}
            yield name, entry.get("value"), entry.get("unit", ""), entry.get("reduction"), alts

    def to_csv(self) -> str:
        """One row per metric: value, unit, reduction, the other reduction, and the run it belongs to."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["metric", "value", "unit", "reduction", "alternative_reduction", "alternative_value",
                         "dataset", "split", "method", "protocol"])
        run = [csv_text(self.dataset), csv_text(self.split), csv_text(self.method), csv_text(self.protocol.get("name"))]
        for name, value, unit, red, alts in self._rows():
            alt_red, alt_val = next(iter(alts.items()), ("", None))
            writer.writerow([csv_text(name), _fmt_csv(value), unit, red, alt_red, _fmt_csv(alt_val)] + run)
        return buf.getvalue()

    def to_markdown(self) -> str:
        setting = ([self.split] if self.split else []) + [
            f"{k}={v}" for k, v in (self.protocol.get("dataset_options") or {}).items()
        ]
        protocol = self.protocol.get("name")
        lines = [
            f"**{markdown_text(self.dataset)}**" + (f" ({markdown_text(', '.join(map(str, setting)))})" if setting else "")
            + f", method {markdown_text(self.method)}, {self.num_samples} samples"
            + (f", protocol {markdown_text(protocol)}" if protocol else ""),
            "",
            "| metric | value | unit | reduction | other reduction |",
            "|---|---:|---|---|---|",
        ]
        for name, value, unit, red, alts in self._rows():
            other = ", ".join(f"{r}: {_fmt_md(v)}" for r, v in alts.items())
            lines.append(f"| {name} | {_fmt_md(value)} | {unit} | {red} | {other} |")
        notes = self.protocol.get("notes") or []
        if notes:
            lines += [""] + [f"- {markdown_text(n)}" for n in notes]
        rt = self.runtime
        if rt.get("seconds_per_sample") is not None:
            lines += ["", f"{_fmt_md(rt['seconds_per_sample'])} s per sample; peak memory {_fmt_md(rt.get('peak_rss_mb'))} MB"]
        return "\n".join(lines) + "\n"

    #: the renderings written beside the JSON: key -> (suffix, method name). A page (``REPORT.html``)
    #: registers here; the JSON itself is always written last.
    RENDERINGS = {"csv": (".csv", "to_csv"), "markdown": (".md", "to_markdown"), "html": (".html", "to_html")}

    def to_html(self, pictures=()) -> str:
        """A static page (:mod:`motionflow.viz.page`, every data string escaped): metrics with units, the
        protocol, the per-sample table and ``pictures`` (``(src, caption)`` pairs, relative to the page)."""
        from ..viz.page import render_report_page

        return render_report_page(self.to_dict(), pictures)

    def write(self, path) -> dict:
        """Write the renderings beside ``path`` (same stem: ``.csv``, ``.md``, ``.html``), then ``path`` (JSON).
        Returns the paths."""
        from ..io import atomic_write_bytes

        path = Path(path)
        out = {}
        for key, (suffix, render) in self.RENDERINGS.items():
            out[key] = path.with_suffix(suffix)
            atomic_write_bytes(out[key], getattr(self, render)().encode("utf-8"))
        atomic_write_bytes(path, (self.to_json() + "\n").encode("utf-8"))
        out["json"] = path
        return out


def _fmt_csv(value):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return repr(float(value))


def _fmt_md(value):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{float(value):.4f}"


def git_sha(start=None) -> str | None:
    """The git commit of the motionflow checkout (None when it is not a git checkout or git is absent).

    Only motionflow's own repository counts: the package's parent folder must be the repository's top
    level and hold a ``pyproject.toml`` naming motionflow (an installed copy inside a user's project,
    e.g. in its ``.venv``, must not report the user's commit)."""
    start = Path(start or Path(__file__).resolve().parents[1])  # the motionflow package folder
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "HEAD"], cwd=start, capture_output=True, text=True, timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.split()
    if out.returncode != 0 or len(lines) != 2 or len(lines[1]) != 40:
        return None
    top, sha = Path(lines[0]).resolve(), lines[1]
    project = top / "pyproject.toml"
    try:
        own = start.resolve().parent == top and 'name = "motionflow"' in project.read_text(errors="replace")
    except OSError:
        own = False
    return sha if own else None


def environment(device: str = "cpu") -> dict:
    """motionflow, torch, numpy, python versions, platform, device and git sha."""
    import numpy

    from .. import __version__

    env = {
        "motionflow": __version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "cpu_count": os.cpu_count(),
        "git_sha": git_sha(),
    }
    if str(device).startswith("cuda"):
        import torch

        env["torch"] = torch.__version__
        if torch.cuda.is_available():
            env["device_name"] = torch.cuda.get_device_name(torch.device(device))
    elif "torch" in sys.modules:
        env["torch"] = sys.modules["torch"].__version__
    else:  # scoring predictions needs no torch: read its version without importing it (seconds)
        from importlib.metadata import PackageNotFoundError, version

        try:
            env["torch"] = version("torch")
        except PackageNotFoundError:  # pragma: no cover - torch is a hard dependency
            env["torch"] = None
    return env


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (``ru_maxrss``, KiB on Linux, bytes on macOS)."""
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024
