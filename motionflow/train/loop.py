"""The training loop: ``train(config)``, one process or torch DDP under ``torchrun``.

One optimizer step, as RAFT's ``train.py``:

1. a batch of augmented clips (:mod:`motionflow.train.data`); optional RAFT noise;
2. the network's training forward (:mod:`motionflow.train.networks`) under fp16 autocast on CUDA when
   ``mixed_precision``;
3. :func:`~motionflow.train.loss.sequence_loss` on the supervised flows;
4. ``GradScaler.scale(loss).backward()``, ``unscale_``, ``clip_grad_norm_(clip)``, ``scaler.step``,
   ``scheduler.step``, ``scaler.update``, with AdamW (``lr``, ``weight_decay``, ``epsilon``) and
   ``OneCycleLR(lr, max_steps + 100, pct_start=0.05, cycle_momentum=False, anneal_strategy="linear")``.

``freeze_bn`` (RAFT: every stage after chairs) keeps BatchNorm layers in eval mode throughout.

**Data parallel.** Under ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``...) the
process group is initialised with NCCL on CUDA and gloo on CPU, the model is wrapped in
``DistributedDataParallel`` (gradients averaged over ranks) and every rank reads its slice of the global
batch, so ``W`` processes take the same steps as one process with the same global ``batch_size`` (up to
floating-point summation order). Logged scalars are reduced over ranks; only rank 0 writes files.

**Logs and checkpoints.** Every ``log_every`` steps a row of window means (loss, epe, px1, px3, px5, the
gradient norm before clipping, lr, seconds) goes to ``log.csv``; every ``checkpoint_every`` steps and at
the end the weights and the resumable state are written (:mod:`motionflow.train.checkpoint`); every
``val_every`` steps the model is evaluated with :func:`motionflow.eval.evaluate` through the method
adapter and the metrics go to ``val.csv``. ``resume=True`` continues from ``train_state.pt`` exactly: same
batches, same augmentation, same RNG streams, same schedule, so the loss curve equals an
uninterrupted run's.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..errors import CheckpointError
from .checkpoint import (
    LOG_NAME,
    VAL_NAME,
    CsvLog,
    find_config,
    load_training_state,
    save_training_state,
    set_rng_state,
    write_config,
)
from .config import ConfigError, TrainConfig, config_from_dict
from .loss import METRIC_NAMES, metrics_from_sums, sequence_loss
from .networks import freeze_batchnorm, get_trainer, select_targets

LOG_FIELDS = ["step", "lr", "loss", *METRIC_NAMES, "grad_norm", "seconds"]
#: Keys that may differ between a run and its resumption (everything else must match).
RESUME_MUTABLE = ("out", "progress", "num_workers", "device", "log_every", "checkpoint_every", "val_every",
                  "val_dataset", "val_root", "val_options", "val_max_samples", "val_iters", "roots", "root")


@dataclass
class TrainResult:
    """What :func:`train` returns (on every rank).

    Attributes:
        out: the run folder; weights: path of the final weights (official layout); step: steps done.
        history: the log rows of this process's run (window means, as in ``log.csv``).
        validation: validation rows.
    """

    out: Path
    weights: Path
    step: int
    history: list = field(default_factory=list)
    validation: list = field(default_factory=list)


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Join the torchrun process group when ``WORLD_SIZE > 1`` (gloo on CPU, NCCL on CUDA)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    here = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo", rank=rank, world_size=world)
        here = True
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, here)


def _reduce_sums(values: dict, info: DistInfo, device) -> dict:
    """Sum a dict of floats over ranks (float64)."""
    if info.world_size == 1:
        return dict(values)
    import torch.distributed as dist

    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) for k, v in zip(keys, t.tolist())}


def resolve_device(cfg: TrainConfig, local_rank: int) -> torch.device:
    if cfg.device is None:
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if cfg.device == "cuda":
        return torch.device(f"cuda:{local_rank}")
    return torch.device(cfg.device)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _check_resume_config(stored: dict, cfg: TrainConfig) -> None:
    import json

    # compare as JSON values: a config read back from config.json has lists where the API had tuples
    stored = json.loads(json.dumps(stored))
    current = json.loads(json.dumps(cfg.to_dict()))
    diff = [k for k in current if k not in RESUME_MUTABLE and stored.get(k) != current[k]]
    if diff:
        pairs = ", ".join(f"{k}: {stored.get(k)!r} -> {current[k]!r}" for k in diff)
        raise ConfigError(f"resume: the config differs from the run being resumed ({pairs}); only {', '.join(RESUME_MUTABLE)} may change")


def _validate(cfg: TrainConfig, trainer, model, device, info: DistInfo) -> dict:
    """Evaluate the model with :func:`motionflow.eval.evaluate` through the method adapter (rank 0)."""
    from ..eval import evaluate
    from ..models.method import NetworkFlowMethod

    from .data import ROOT_SUBDIRS

    name = "synthetic-flow" if cfg.val_dataset == "synthetic" else cfg.val_dataset
    root = cfg.val_root
    if root is None and cfg.root is not None:  # the training root, or its RAFT-named sub-folder
        sub = Path(cfg.root) / ROOT_SUBDIRS.get(name, name)
        root = str(sub) if sub.is_dir() else cfg.root
    method = NetworkFlowMethod(trainer.spec(), model, iters=cfg.val_iters, device=device)
    report = evaluate(
        name,
        method,
        root=root,
        dataset_options=dict(cfg.val_options),
        max_samples=cfg.val_max_samples,
        progress=False,
        device=str(device),
    )
    return {k: report.value(k) for k in ("epe", "px1", "px3", "px5", "fl_all") if k in report.metrics}


def train(
    config,
    resume: bool = False,
    stop_at: Optional[int] = None,
    callback: Optional[Callable[[int, dict], None]] = None,
) -> TrainResult:
    """Train a network (see the module docstring).

    Args:
        config: a :class:`~motionflow.train.config.TrainConfig` or a mapping for
            :func:`~motionflow.train.config.config_from_dict`; ``out`` is required.
        resume: continue the run in ``config.out`` from its ``train_state.pt``.
        stop_at: stop (with a checkpoint) after this many steps although the schedule runs to
            ``max_steps`` (an interruption; ``resume`` continues it).
        callback: ``callback(step, row)`` after every logged row.

    Returns:
        :class:`TrainResult`.
    """
    from .data import ClipSampler, build_mixture

    cfg = config if isinstance(config, TrainConfig) else config_from_dict(dict(config))
    if cfg.out is None:
        raise ConfigError("config key 'out': expected the run folder, found None")
    out = Path(cfg.out)
    if cfg.model == "scoop":  # the scene-flow feature net, self-supervised (motionflow.train.scoop)
        from .scoop import train_scoop

        return train_scoop(cfg, resume, stop_at, callback)
    trainer = get_trainer(cfg.model)
    frames = cfg.frames or trainer.default_frames

    device = resolve_device(cfg, int(os.environ.get("LOCAL_RANK", "0")))
    info = init_distributed(device.type)
    try:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return _train(cfg, trainer, frames, out, device, info, resume, stop_at, callback, ClipSampler, build_mixture)
    finally:
        if info.initialized_here:
            import torch.distributed as dist

            dist.destroy_process_group()


@dataclass
class _Run:
    """The model and its optimisation state, built (or restored) by :func:`_build_run`."""

    model: torch.nn.Module
    net: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: Optional[object]
    amp: bool
    train_mode: Callable[[], None]
    start: int = 0
    window: dict = field(default_factory=dict)


def _build_run(cfg: TrainConfig, trainer, frames: int, device, info: DistInfo, state: Optional[dict]) -> _Run:
    """Seed, build the network (optionally from ``init_checkpoint``), wrap it for DDP, make AdamW +
    OneCycleLR (+ GradScaler on CUDA), and restore a resumed ``state`` (weights, optimiser, schedule,
    scaler, RNG streams, step, log window), in the order that keeps the RNG streams of a fresh run."""
    from ..models import create_model, load_official_checkpoint

    _seed_everything(cfg.seed)
    model = create_model(cfg.model, **cfg.model_options)
    trainer.check_frames(model, frames)
    if cfg.init_checkpoint is not None and state is None:
        load_official_checkpoint(model, cfg.init_checkpoint)
    model.to(device)
    freeze = cfg.freeze_bn
    if freeze is None:  # RAFT: BatchNorm trains on chairs (from scratch), frozen in the fine-tuning stages
        freeze = not any(s in cfg.dataset for s in ("chairs", "synthetic"))

    def train_mode():
        model.train()
        if freeze:
            freeze_batchnorm(model)

    train_mode()
    net = model
    if info.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=cfg.model != "raft",
        )

    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, eps=cfg.epsilon)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, cfg.lr, cfg.max_steps + cfg.scheduler_extra_steps,
        pct_start=cfg.pct_start, cycle_momentum=False, anneal_strategy="linear",
    )
    amp = bool(cfg.mixed_precision and device.type == "cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=amp) if device.type == "cuda" else None
    run = _Run(model, net, optimizer, scheduler, scaler, amp, train_mode)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        run.start = int(state["step"])
        run.window = dict(state.get("window") or {})
    return run


def _optimizer_step(cfg: TrainConfig, trainer, run: _Run, batch: dict, device) -> tuple:
    """One step (module docstring, 2-4); returns ``(loss, metric sums, gradient norm before clipping, lr)``."""
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    run.optimizer.zero_grad(set_to_none=True)
    autocast = torch.autocast("cuda", dtype=torch.float16) if run.amp else contextlib.nullcontext()
    with autocast:
        pred = trainer.forward(run.net, batch["frames"], cfg.iters)
    keep, gt, valid = select_targets(pred.targets, batch["flow"], batch["valid"], batch.get("backward"), batch.get("backward_valid"))
    its = [p[:, keep].float() for p in pred.iterations]
    loss, sums = sequence_loss(its, gt, valid, cfg.gamma, cfg.max_flow, trainer.flow_reduction)
    if run.scaler is not None:
        run.scaler.scale(loss).backward()
        run.scaler.unscale_(run.optimizer)
    else:
        loss.backward()
    grad_norm = float(torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.clip))
    lr = run.scheduler.get_last_lr()[0]
    if run.scaler is not None:
        run.scaler.step(run.optimizer)
    else:
        run.optimizer.step()
    run.scheduler.step()
    if run.scaler is not None:
        run.scaler.update()
    return loss, sums, grad_norm, lr


def _add_to_window(window: dict, loss: float, grad_norm: float, metrics: dict, lr: float) -> None:
    """Accumulate one step into the log window (its means make the next ``log.csv`` row)."""
    window["n_steps"] = window.get("n_steps", 0) + 1
    window["loss"] = window.get("loss", 0.0) + loss
    window["grad_norm"] = window.get("grad_norm", 0.0) + grad_norm
    for k in METRIC_NAMES:
        window[k] = window.get(k, 0.0) + metrics[k]
    window["lr"] = lr


def _window_row(window: dict, step: int, seconds: float) -> dict:
    n = window["n_steps"]
    return {"step": step, "lr": window["lr"], "loss": window["loss"] / n, "grad_norm": window["grad_norm"] / n,
            **{k: window[k] / n for k in METRIC_NAMES}, "seconds": seconds}


def _resume_state(out: Path, cfg: TrainConfig, resume: bool) -> Optional[dict]:
    """The state to resume from (its config checked against ``cfg``), or None for a fresh run in an
    empty ``out``."""
    if resume:
        state = load_training_state(out)
        _check_resume_config(state["config"], cfg)
        return state
    if (out / "train_state.pt").exists():
        raise CheckpointError(f"out: {str(out)!r} already holds a run (train_state.pt); pass resume=True / --resume, or a new folder")
    return None


def _train(cfg, trainer, frames, out, device, info, resume, stop_at, callback, ClipSampler, build_mixture):
    run = _build_run(cfg, trainer, frames, device, info, _resume_state(out, cfg, resume))
    model, start, window = run.model, run.start, run.window

    mixture = build_mixture(
        cfg.dataset, cfg.root, frames, tuple(cfg.crop), augment=cfg.augment, roots=cfg.roots,
        synthetic=cfg.synthetic, backward=cfg.supervise_backward, add_noise=cfg.add_noise,
    )
    end = cfg.max_steps if stop_at is None else min(int(stop_at), cfg.max_steps)
    sampler = ClipSampler(len(mixture), cfg.batch_size, cfg.seed, info.rank, info.world_size, start, end)
    loader = torch.utils.data.DataLoader(
        mixture, batch_sampler=sampler, num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
    )

    log = CsvLog(out / LOG_NAME, LOG_FIELDS)
    val_log = CsvLog(out / VAL_NAME, ["step", "epe", "px1", "px3", "px5", "fl_all"])
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_config(out, cfg.to_dict())
        log.truncate(start)
        val_log.truncate(start)

    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.max_steps, initial=start, desc=f"train {cfg.model}", unit="step",
               disable=not (cfg.progress and info.is_main))
    if info.is_main and mixture.skipped:
        bar.write("training mixture: " + mixture.describe() + "; skipped (no loader): " + "; ".join(mixture.skipped))

    history, validation = [], []
    step = start
    t_window = time.perf_counter()

    def checkpoint(at: int):
        if info.is_main:
            # the log window in progress is part of the state, so a resumed run logs the same means
            save_training_state(out, at, model, run.optimizer, run.scheduler, run.scaler, cfg.to_dict(), cfg.model,
                                extra={"window": dict(window)})
        _barrier(info)

    for batch in loader:
        loss, sums, grad_norm, lr = _optimizer_step(cfg, trainer, run, batch, device)
        step += 1
        reduced = _reduce_sums({"loss": float(loss.detach()), **{f"m_{k}": v for k, v in sums.items()}}, info, device)
        metrics = metrics_from_sums({k[2:]: v for k, v in reduced.items() if k.startswith("m_")})
        _add_to_window(window, reduced["loss"] / info.world_size, grad_norm, metrics, lr)
        bar.update(1)
        # log at the schedule's last step, not at a stop_at interruption: the window in progress is
        # saved with the state, so a resumed run logs exactly the rows of an uninterrupted one
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            row = _window_row(window, step, time.perf_counter() - t_window)
            window = {}
            t_window = time.perf_counter()
            history.append(row)
            if info.is_main:
                log.append(row)
                bar.set_postfix(loss=f"{row['loss']:.4f}", epe=f"{row['epe']:.3f}")
            if callback is not None:
                callback(step, row)
        if cfg.val_every and step % cfg.val_every == 0:
            if info.is_main:
                vrow = {"step": step, **_validate(cfg, trainer, model, device, info)}
                validation.append(vrow)
                val_log.append(vrow)
                bar.write(f"validation at step {step}: " + ", ".join(f"{k}={v:.4f}" for k, v in vrow.items() if k != "step"))
                model.to(device)
            run.train_mode()
            _barrier(info)
        if step % cfg.checkpoint_every == 0 or step == end:
            checkpoint(step)
    bar.close()
    if step == start and info.is_main and not (out / "model.pth").exists():
        checkpoint(step)
    return TrainResult(out, out / "model.pth", step, history, validation)


def _barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        import torch.distributed as dist

        dist.barrier()


def resume_config(out, **overrides) -> TrainConfig:
    """The stored config of the run in ``out`` with ``overrides`` (None ignored) applied."""
    stored = find_config(out)
    if stored is None:
        raise CheckpointError(f"resume: no config.json in {str(out)!r} (was the run started with this --out?)")
    stored.update({k: v for k, v in overrides.items() if v is not None})
    stored["out"] = str(out)
    return config_from_dict(stored)
