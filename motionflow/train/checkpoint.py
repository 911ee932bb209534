"""Run folder, weights in the official layouts, and the resumable training state.

Run folder ``OUT/``::

    config.json            the resolved TrainConfig
    model.pth              the latest weights, official layout (what ``estimate`` / ``eval`` load)
    checkpoints/step_NNNNNNN.pth   weights at every checkpoint step, same layout
    train_state.pt         resumable state of the latest checkpoint (see below)
    log.csv                per-step scalars: step, lr, loss, epe, px1, px3, px5, seconds
    val.csv                validation metrics (when validation is on)

**Weights** are written as the official code saves them, so ``create_model(name, checkpoint=path)``,
``motionflow estimate --checkpoint`` and the official repositories read them: RAFT and VideoFlow a flat
``{"module.<key>": tensor}`` (``nn.DataParallel``'s ``state_dict()``), StreamFlow ``{"model": {"module.<key>":
...}}``. For RAFT the context encoder's twice-registered BatchNorm is written under both official names
(``norm3`` and ``downsample.1``, :data:`motionflow.models.raft.RAFT_ALIASES`), so the official strict load
accepts the file too.

**Training state** (``train_state.pt``): step, model and optimizer / scheduler / GradScaler state, the
RNG states of Python, NumPy and torch (CPU and CUDA), and the config. Data position needs nothing more:
the sampler is a function of (seed, step). Every file is written to a temporary name and renamed
(``os.replace``), the state last, so an interruption at any point leaves a consistent pair.

The state holds only what ``torch.load(weights_only=True)`` reads: tensors, plain containers, numbers and
strings (the RNG states as lists / tensors, the config as JSON text), and it is read that way, so resuming
a run folder someone sent you never executes code from it. A state that needs anything else (an older
motionflow's version 1, which pickled NumPy arrays, or a foreign file) is refused with a
:class:`~motionflow.errors.CheckpointError` before any object in it is built.
"""

from __future__ import annotations

import csv
import json
import random
from collections import OrderedDict
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import CheckpointError
from ..io.atomic import atomic_path

WEIGHTS_NAME = "model.pth"
STATE_NAME = "train_state.pt"
CONFIG_NAME = "config.json"
LOG_NAME = "log.csv"
VAL_NAME = "val.csv"
STATE_VERSION = 2  # 2: weights_only-safe (1 pickled NumPy RNG arrays and the config dict)


def official_state_dict(model: torch.nn.Module, name: str) -> dict:
    """The model's weights in the layout of ``name``'s official checkpoints (see the module docstring)."""
    model = getattr(model, "module", model)  # DDP / DataParallel
    sd = OrderedDict((k, v.detach().cpu().clone()) for k, v in model.state_dict().items())
    aliases = getattr(model, "checkpoint_aliases", None) or {}
    for alias, canonical in aliases.items():
        if canonical in sd and alias not in sd:
            sd[alias] = sd[canonical].clone()
    flat = OrderedDict((f"module.{k}", v) for k, v in sd.items())
    return {"model": flat} if name == "streamflow" else flat


def _save(obj, path: Path) -> Path:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return path


def save_weights(model, name: str, path) -> Path:
    """Write ``model``'s weights to ``path`` in the official layout (atomically)."""
    return _save(official_state_dict(model, name), Path(path))


def rng_state() -> dict:
    """The RNG states of Python, NumPy and torch (CPU, and CUDA when present) as plain lists and tensors."""
    version, words, gauss = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    state = {
        "python": {"version": int(version), "words": list(words), "gauss": gauss},
        "numpy": {
            "bit_generator": numpy_state["bit_generator"],
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict) -> None:
    """Restore the generators from :func:`rng_state`'s dict."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["words"]), py["gauss"]))
    n = state["numpy"]
    np.random.set_state({
        "bit_generator": n["bit_generator"],
        "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
        "has_gauss": n["has_gauss"],
        "gauss": n["gauss"],
    })
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(out, step: int, model, optimizer, scheduler, scaler, config: dict, name: str,
                        extra: Optional[dict] = None) -> None:
    """Write weights (``model.pth`` and ``checkpoints/step_N.pth``), then ``train_state.pt`` (with ``extra`` entries)."""
    out = Path(out)
    weights = official_state_dict(model, name)
    _save(weights, out / "checkpoints" / f"step_{step:07d}.pth")
    _save(weights, out / WEIGHTS_NAME)
    bare = getattr(model, "module", model)
    state = {
        "version": STATE_VERSION,
        "step": int(step),
        "model": bare.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng_state(),
        "config": json.dumps(config, sort_keys=True),
        **(extra or {}),
    }
    _save(state, out / STATE_NAME)


def load_training_state(out) -> dict:
    """Read ``OUT/train_state.pt`` with ``weights_only=True``; ``state["config"]`` comes back as a dict.

    Raises CheckpointError when the file is missing, is not a torch file, holds anything besides tensors,
    plain containers, numbers and strings (an older motionflow's state or a foreign / crafted file: it is
    refused before any object in it is built), or is not a motionflow training state.
    """
    from ..models.weights import read_checkpoint

    path = Path(out) / STATE_NAME
    if not path.is_file():
        raise CheckpointError(f"resume: no training state {str(path)!r} (was the run started with this --out?)")
    state = read_checkpoint(path, what="resume: training state")
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION or not isinstance(state.get("config"), str):
        found = state.get("version") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"resume: {str(path)!r} is not a motionflow training state of version {STATE_VERSION} (found version "
            f"{found!r}); start a new run folder"
        )
    try:
        state["config"] = json.loads(state["config"])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"resume: {str(path)!r} holds a config that is not JSON ({exc})") from exc
    return state


def write_config(out, config: dict) -> None:
    with atomic_path(Path(out) / CONFIG_NAME) as tmp:
        tmp.write_text(json.dumps(config, indent=2, sort_keys=True))


class CsvLog:
    """Append-only CSV of scalars with a fixed header; ``truncate(step)`` drops rows after a resumed step."""

    def __init__(self, path, fields: list):
        self.path = Path(path)
        self.fields = list(fields)

    def truncate(self, step: int) -> None:
        """Keep only rows with ``step <= step`` (rows logged after the state being resumed)."""
        if not self.path.is_file():
            return
        with open(self.path, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= step]
        with atomic_path(self.path) as tmp:
            with open(tmp, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=self.fields)
                w.writeheader()
                w.writerows(rows)

    def append(self, row: dict) -> None:
        new = not self.path.is_file()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)
            fh.flush()

    def read(self) -> list:
        if not self.path.is_file():
            return []
        with open(self.path, newline="") as fh:
            return list(csv.DictReader(fh))


def find_config(out) -> Optional[dict]:
    path = Path(out) / CONFIG_NAME
    return json.loads(path.read_text()) if path.is_file() else None
