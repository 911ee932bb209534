"""Evaluation reports: JSON (DESIGN.md section 6), CSV and a markdown table, plus the environment.

JSON schema::

    {
      "dataset": "sintel", "split": "training", "method": "raft" | "predictions:DIR",
      "protocol": {...},                       # kind, default reductions, eps, AV2 on/off, notes,
                                               # dataset_options (e.g. Sintel's pass_name) when given
      "metrics": {NAME: {"value": float|null, "reduction": "pixel"|"image"|"sample"|"point"|"class",
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

NaN is written as ``null`` (JSON has no NaN). Files are written atomically.
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


def json_safe(value):
    """JSON-safe copy: NaN / inf floats become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return json_safe(value.item())
    return value


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
            yield name, entry.get("value"), entry.get("reduction"), alts

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["metric", "value", "reduction", "alternative_reduction", "alternative_value"])
        for name, value, red, alts in self._rows():
            alt_red, alt_val = next(iter(alts.items()), ("", None))
            writer.writerow([name, _fmt_csv(value), red, alt_red, _fmt_csv(alt_val)])
        return buf.getvalue()

    def to_markdown(self) -> str:
        setting = ([self.split] if self.split else []) + [
            f"{k}={v}" for k, v in (self.protocol.get("dataset_options") or {}).items()
        ]
        lines = [
            f"**{self.dataset}**" + (f" ({', '.join(setting)})" if setting else "") + f", method `{self.method}`, "
            f"{self.num_samples} samples",
            "",
            "| metric | value | reduction | other reduction |",
            "|---|---:|---|---|",
        ]
        for name, value, red, alts in self._rows():
            other = ", ".join(f"{r}: {_fmt_md(v)}" for r, v in alts.items())
            lines.append(f"| {name} | {_fmt_md(value)} | {red} | {other} |")
        rt = self.runtime
        if rt.get("seconds_per_sample") is not None:
            lines += ["", f"{_fmt_md(rt['seconds_per_sample'])} s per sample; peak memory {_fmt_md(rt.get('peak_rss_mb'))} MB"]
        return "\n".join(lines) + "\n"

    def write(self, path) -> dict:
        """Write ``path`` (JSON) and, beside it, ``.csv`` and ``.md`` with the same stem. Returns the paths."""
        from ..io import atomic_write_bytes

        path = Path(path)
        out = {"json": path, "csv": path.with_suffix(".csv"), "markdown": path.with_suffix(".md")}
        atomic_write_bytes(out["json"], (self.to_json() + "\n").encode())
        atomic_write_bytes(out["csv"], self.to_csv().encode())
        atomic_write_bytes(out["markdown"], self.to_markdown().encode())
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
    """The git commit of the motionflow checkout (None when it is not a git checkout or git is absent)."""
    start = Path(start or Path(__file__).resolve().parent)
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=start, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and len(sha) == 40 else None


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
