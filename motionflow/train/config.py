"""Training configuration: a typed dataclass, published schedules, JSON/YAML files, clear errors.

``TrainConfig`` holds every setting of a run. It is built from, in increasing priority: the defaults
below (RAFT ``train.py``'s argument defaults), a published ``schedule`` (:data:`SCHEDULES`), a config file
(JSON, or YAML when PyYAML is importable) and explicit keyword / command-line values.
:func:`config_from_dict` checks every key and value and raises :class:`ConfigError` naming the key,
what was expected and what was found (unknown keys list the valid ones).

Published schedules (``schedule`` key; all AdamW + OneCycleLR with linear annealing, ``pct_start``
0.05, no momentum cycling, ``num_steps + 100`` scheduler steps, gradient clipping at 1.0):

==================  =========  =========  =====  =========  ========  =====  =====  ===========================
schedule            steps      lr         batch  crop       wd        gamma  iters  source
==================  =========  =========  =====  =========  ========  =====  =====  ===========================
raft-chairs         100k       4e-4       12     368x496    1e-4      0.8    12     RAFT train_standard.sh
raft-things         100k       1.25e-4    6      400x720    1e-4      0.8    12     ″
raft-sintel         100k       1.25e-4    6      368x768    1e-5      0.85   12     ″
raft-kitti          50k        1e-4       6      288x960    1e-5      0.85   12     ″
videoflow-bof-*     120k/120k/80k  2.5e-4/1.25e-4/1.25e-4  8  432x960  1e-4  0.8/0.85/0.85  12   VideoFlow configs
videoflow-mof-*     125k/40k/25k   2.5e-4/1.25e-4/1.25e-4  8  432x960  1e-4  0.8/0.85/0.85  6/12/12  ″
streamflow-sintel   180k       1.75e-4    8      432x960    1e-5      0.85   12     StreamFlow train_sintel_kitti.sh
==================  =========  =========  =====  =========  ========  =====  =====  ===========================

(``*`` = ``things`` / ``sintel`` / ``kitti``; each schedule also sets its stage's ``dataset``.) ``scoop-kitti-v`` is
SCOOP's self-supervised KITTI_v run of the scene-flow feature net (Adam, step decay; :mod:`motionflow.train.scoop`). The
VideoFlow KITTI stage keeps the 432x960 crop of the research notes (``optical_flow.md`` section 1.5);
KITTI images are 375 px high, so the augmentation's minimum scale upsamples them to fit.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..errors import MotionflowError


class ConfigError(MotionflowError, ValueError):
    """A training configuration is invalid: the message names the key, the expectation and the value."""


@dataclass
class TrainConfig:
    """Every setting of a training run (defaults: RAFT ``train.py``).

    Attributes:
        model: network name (``raft``, ``videoflow-bof``, ``videoflow-mof``, ``streamflow``; ``scoop``: the
            scene-flow feature net, see :mod:`motionflow.train.scoop`).
        dataset: ``NAME[:WEIGHT],...`` (see :mod:`motionflow.train.data`).
        root: dataset root (not needed for ``synthetic``); roots: per-loader roots.
        out: the run folder.
        schedule: a published schedule name (:data:`SCHEDULES`) whose values fill unset keys.
        max_steps: optimizer steps (RAFT ``num_steps``).
        batch_size: global batch (split over data-parallel processes).
        lr, weight_decay, epsilon: AdamW (RAFT: ``lr``, ``wdecay``, ``epsilon``).
        pct_start, scheduler_extra_steps: OneCycleLR warm-up share and the extra scheduler steps (RAFT: +100).
        clip: gradient-norm clipping.
        gamma, max_flow: sequence loss.
        iters: refinement iterations in training.
        frames: clip length T (None = the network's: raft 2, bof 3, mof 5, streamflow 4).
        crop: ``[h, w]`` training crop (multiples of 8; >= 128 for the official 4-level correlation).
        augment: apply the augmentation (False: centre crop only, e.g. for overfitting tests).
        add_noise: RAFT ``--add_noise``: Gaussian noise of stdv U(0, 5) on the frames.
        freeze_bn: keep BatchNorm statistics frozen (None = RAFT's rule: frozen except on chairs / synthetic).
        mixed_precision: fp16 autocast + GradScaler on CUDA (ignored on CPU).
        init_checkpoint: weights to start from (fine-tuning; official layouts load strictly).
        model_options: constructor options of the network (e.g. ``{"corr_levels": 2}``).
        supervise_backward: also supervise backward flows where samples carry backward ground truth.
        seed: run seed (model init, sampling, augmentation).
        num_workers: DataLoader worker processes.
        device: ``cpu`` / ``cuda`` / None (CUDA when available; ``cuda:LOCAL_RANK`` under torchrun).
        log_every: CSV log row every N steps (RAFT prints running means every 100).
        checkpoint_every: weights + resumable state every N steps (RAFT: 5000).
        val_every, val_dataset, val_root, val_options, val_max_samples, val_iters: periodic validation
            with :func:`motionflow.eval.evaluate` (``val_every`` 0 = off).
        synthetic: options of the ``synthetic`` dataset (``num_samples``, ``size``, ``max_motion``...).
        progress: tqdm progress bar on rank 0.
    """

    model: str = "raft"
    dataset: str = "synthetic"
    root: Optional[str] = None
    roots: dict = field(default_factory=dict)
    out: Optional[str] = None
    schedule: Optional[str] = None
    max_steps: int = 100000
    batch_size: int = 6
    lr: float = 2e-5
    weight_decay: float = 5e-5
    epsilon: float = 1e-8
    pct_start: float = 0.05
    scheduler_extra_steps: int = 100
    clip: float = 1.0
    gamma: float = 0.8
    max_flow: float = 400.0
    iters: int = 12
    frames: Optional[int] = None
    crop: list = field(default_factory=lambda: [384, 512])
    augment: bool = True
    add_noise: bool = False
    freeze_bn: Optional[bool] = None
    mixed_precision: bool = False
    init_checkpoint: Optional[str] = None
    model_options: dict = field(default_factory=dict)
    supervise_backward: bool = False
    seed: int = 1234
    num_workers: int = 0
    device: Optional[str] = None
    log_every: int = 100
    checkpoint_every: int = 5000
    val_every: int = 0
    val_dataset: Optional[str] = None
    val_root: Optional[str] = None
    val_options: dict = field(default_factory=dict)
    val_max_samples: Optional[int] = None
    val_iters: Optional[int] = None
    synthetic: dict = field(default_factory=dict)
    progress: bool = True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _stage(dataset, steps, lr, batch, crop, wd, gamma, iters, val=None):
    out = {"dataset": dataset, "max_steps": steps, "lr": lr, "batch_size": batch, "crop": list(crop),
           "weight_decay": wd, "gamma": gamma, "iters": iters}
    if val:
        out["val_dataset"] = val
    return out


#: Published schedules (see the module docstring).
SCHEDULES: dict[str, dict] = {
    "raft-chairs": _stage("stage-chairs", 100_000, 4e-4, 12, (368, 496), 1e-4, 0.8, 12, "chairs"),
    "raft-things": _stage("stage-things", 100_000, 1.25e-4, 6, (400, 720), 1e-4, 0.8, 12, "sintel"),
    "raft-sintel": _stage("stage-sintel", 100_000, 1.25e-4, 6, (368, 768), 1e-5, 0.85, 12, "sintel"),
    "raft-kitti": _stage("stage-kitti", 50_000, 1e-4, 6, (288, 960), 1e-5, 0.85, 12, "kitti2015"),
    "videoflow-bof-things": _stage("stage-things", 120_000, 2.5e-4, 8, (432, 960), 1e-4, 0.8, 12, "sintel"),
    "videoflow-bof-sintel": _stage("stage-sintel", 120_000, 1.25e-4, 8, (432, 960), 1e-4, 0.85, 12, "sintel"),
    "videoflow-bof-kitti": _stage("stage-kitti", 80_000, 1.25e-4, 8, (432, 960), 1e-4, 0.85, 12, "kitti2015"),
    "videoflow-mof-things": _stage("stage-things", 125_000, 2.5e-4, 8, (432, 960), 1e-4, 0.8, 6, "sintel"),
    "videoflow-mof-sintel": _stage("stage-sintel", 40_000, 1.25e-4, 8, (432, 960), 1e-4, 0.85, 12, "sintel"),
    "videoflow-mof-kitti": _stage("stage-kitti", 25_000, 1.25e-4, 8, (432, 960), 1e-4, 0.85, 12, "kitti2015"),
    "streamflow-sintel": _stage("stage-sintel", 180_000, 1.75e-4, 8, (432, 960), 1e-5, 0.85, 12, "sintel"),
    # SCOOP train_on_kitti_v.sh: 100 pairs, batch 4, 400 epochs of 25 steps, lr x 0.1 after epoch 340
    # (motionflow.train.scoop)
    "scoop-kitti-v": {"dataset": "kitti-sf-flownet3d", "max_steps": 10_000, "lr": 1e-3, "batch_size": 4,
                      "log_every": 25, "checkpoint_every": 2500,
                      "model_options": {"split": "scoop-kitti-v", "dataset_options": {"max_depth": 35.0},
                                        "lr_decay_step": 8500, "lr_decay": 0.1}},
}
for _name, _sched in SCHEDULES.items():
    _sched["model"] = _name.split("-things")[0].split("-sintel")[0].split("-chairs")[0].split("-kitti")[0]


def _coerce(key: str, value, tp):
    """Check ``value`` against the dataclass annotation ``tp``; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(key, value, args[0])
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key!r}: expected true or false, found {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key!r}: expected an integer, found {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"config key {key!r}: expected a number, found {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config key {key!r}: expected a string, found {value!r}")
    if tp in (dict, "dict") or origin is dict:
        if isinstance(value, dict):
            return dict(value)
        raise ConfigError(f"config key {key!r}: expected a mapping, found {value!r}")
    if tp in (list, "list") or origin is list:
        if isinstance(value, (list, tuple)):
            return list(value)
        raise ConfigError(f"config key {key!r}: expected a list, found {value!r}")
    return value


def _hints() -> dict:
    return typing.get_type_hints(TrainConfig)


def validate(cfg: TrainConfig) -> TrainConfig:
    """Range and consistency checks; raises :class:`ConfigError` naming the key."""
    if cfg.model == "scoop":  # the scene-flow feature net: its own keys (motionflow.train.scoop)
        from .scoop import validate_scoop

        return validate_scoop(cfg)
    from ..models import NETWORKS

    def need(ok: bool, key: str, expected: str):
        if not ok:
            raise ConfigError(f"config key {key!r}: expected {expected}, found {getattr(cfg, key)!r}")

    need(cfg.model in NETWORKS, "model", f"one of {', '.join(sorted(NETWORKS))}")
    need(cfg.max_steps >= 1, "max_steps", "an integer >= 1")
    need(cfg.batch_size >= 1, "batch_size", "an integer >= 1")
    need(cfg.lr > 0, "lr", "a learning rate > 0")
    need(cfg.weight_decay >= 0, "weight_decay", "a number >= 0")
    need(cfg.epsilon > 0, "epsilon", "a number > 0")
    need(0 < cfg.pct_start < 1, "pct_start", "a fraction in (0, 1)")
    need(cfg.scheduler_extra_steps >= 0, "scheduler_extra_steps", "an integer >= 0")
    need(cfg.clip > 0, "clip", "a gradient-norm bound > 0")
    need(0 < cfg.gamma <= 1, "gamma", "an iteration weight in (0, 1]")
    need(cfg.max_flow > 0, "max_flow", "a number of pixels > 0")
    need(cfg.iters >= 1, "iters", "an integer >= 1")
    need(cfg.frames is None or cfg.frames >= 2, "frames", "None or an integer >= 2")
    need(
        isinstance(cfg.crop, list) and len(cfg.crop) == 2 and all(isinstance(c, int) and not isinstance(c, bool) and c > 0 and c % 8 == 0 for c in cfg.crop),
        "crop", "[height, width]: two positive integers, multiples of 8",
    )
    levels = int(cfg.model_options.get("corr_levels", 4))
    min_side = 8 * 2 ** (levels - 1) * 2  # coarsest correlation level >= 2 px (128 for 4 levels)
    need(min(cfg.crop) >= min_side, "crop",
         f"both sides >= {min_side} px ({levels} correlation levels: the official networks return NaN below; "
         "fewer levels via model_options.corr_levels allow smaller crops for RAFT)")
    need(cfg.num_workers >= 0, "num_workers", "an integer >= 0")
    need(cfg.log_every >= 1, "log_every", "an integer >= 1")
    need(cfg.checkpoint_every >= 1, "checkpoint_every", "an integer >= 1")
    need(cfg.val_every >= 0, "val_every", "an integer >= 0 (0 = no validation)")
    need(cfg.val_every == 0 or cfg.val_dataset is not None, "val_dataset", "a dataset name when val_every > 0")
    need(cfg.schedule is None or cfg.schedule in SCHEDULES, "schedule", f"one of {', '.join(sorted(SCHEDULES))}")
    need(cfg.device is None or cfg.device.split(":")[0] in ("cpu", "cuda"), "device", "cpu, cuda or cuda:N")
    from .data import expand_terms

    expand_terms(cfg.dataset)  # unknown names / bad weights: UnknownNameError naming the term
    return cfg


def config_from_dict(values: dict, base: Optional[dict] = None) -> TrainConfig:
    """Build a validated :class:`TrainConfig` from a mapping (``base`` values first, ``values`` override).

    A ``schedule`` (in either) fills the keys neither sets. Raises :class:`ConfigError` for unknown keys
    (listing the valid ones), wrong types and out-of-range values.
    """
    if not isinstance(values, dict):
        raise ConfigError(f"config: expected a mapping of keys to values, found {type(values).__name__}")
    merged = dict(base or {})
    merged.update(values)
    hints = _hints()
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    unknown = sorted(set(merged) - set(names))
    if unknown:
        raise ConfigError(f"config: unknown keys {unknown}; valid keys: {', '.join(names)}")
    schedule = merged.get("schedule")
    if schedule is not None:
        if schedule not in SCHEDULES:
            raise ConfigError(f"config key 'schedule': expected one of {', '.join(sorted(SCHEDULES))}, found {schedule!r}")
        merged = {**SCHEDULES[schedule], **merged}
    if merged.get("model") == "scoop":  # train_scoop.py's defaults where neither schedule nor user set a key
        from .scoop import CONFIG_DEFAULTS

        merged = {**CONFIG_DEFAULTS, **merged}
    kwargs = {k: _coerce(k, v, hints[k]) for k, v in merged.items()}
    return validate(TrainConfig(**kwargs))


def read_config_file(path) -> dict:
    """A JSON (``.json``) or YAML (``.yaml`` / ``.yml``, needs PyYAML) mapping from ``path``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        from ..errors import require

        yaml = require("yaml", "pyyaml")
        try:
            data = yaml.safe_load(text)
        except Exception as exc:
            raise ConfigError(f"config file {str(path)!r}: not valid YAML ({exc})") from exc
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config file {str(path)!r}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r}: expected a mapping of keys to values, found {type(data).__name__}")
    return data


def load_config(path=None, **overrides: Any) -> TrainConfig:
    """:func:`config_from_dict` of the file at ``path`` (optional) with ``overrides`` (None values ignored)."""
    base = read_config_file(path) if path is not None else {}
    return config_from_dict({k: v for k, v in overrides.items() if v is not None}, base=base)
