"""Self-supervised training of SCOOP's point-feature network: ``motionflow train --model scoop``.

As ``itailang/SCOOP`` ``scripts/train_scoop.py`` (``train_on_kitti_v.sh``), no ground-truth flow used:

* a batch of ``batch_size`` pairs (4), each cloud subsampled to ``points`` random points (2048);
* the network's forward (:func:`motionflow.sceneflow.scoop.learned_correspondences`: features, one
  Sinkhorn iteration with the learned eps / gamma, top-64 soft targets, confidence);
* :func:`motionflow.sceneflow.scoop.training_loss`: confidence-weighted squared Chamfer of the soft targets
  + 0.1 (1 - mean confidence) + 10 x the L1 smoothness of the initial flow over the 31 nearest other points;
* Adam (lr 1e-3, PyTorch defaults otherwise), learning rate x ``lr_decay`` from ``lr_decay_step`` on
  (KITTI_v: x 0.1 after epoch 340 of 400).

``--schedule scoop-kitti-v`` is the published run: ``kitti-sf-flownet3d`` split ``scoop-kitti-v`` (100
pairs; points beyond 35 m depth removed as SCOOP's loader does), batch 4, 10,000 steps (400 epochs of 25),
decay at step 8,500. The FT3D runs of the paper (``train_on_ft3d_o.sh``, ``train_on_ft3d_s.sh``) need
FlyingThings3D loaders motionflow does not have. Any scene-flow dataset trains (``synthetic-lidar``,
``pairs``, ``kitti-sf-*``, ``lidar-kitti``, ...): ``--dataset NAME``; its split, loader options and the
loss settings go in ``model_options`` (:data:`OPTION_DEFAULTS`); ``init_checkpoint`` starts from a SCOOP or
FLOT file (e.g. FLOT's released feature net).

Sampling and resume are the optical trainer's (:class:`motionflow.train.data.ClipSampler`: batches are a
function of (seed, step); each pair's subsample is seeded by its key), the state is written with
:func:`motionflow.train.checkpoint.save_training_state` and read back with ``load_training_state``
(``weights_only=True``), so an interrupted and resumed run takes the steps of an uninterrupted one.

Run folder: ``model.pth`` (flat state dict, ``module.`` keys, as the optical trainer writes),
``model.tar`` (SCOOP's own layout, ``{"args": argparse.Namespace, "model", "optimizer", "scheduler"}``,
loadable by the official ``evaluate_scoop.py``), ``checkpoints/``, ``train_state.pt``, ``config.json``,
``log.csv`` (step, lr, loss, recon, conf, smooth, epe of the initial flow where the data has ground
truth, seconds) and ``val.csv``. Either weights file is ``motionflow sceneflow --method scoop
--method-option checkpoint=PATH``.

Deviations: a cloud with fewer than ``points`` points is padded by drawing extra points again (the
official loader returns fewer points, which only works with batch 1); no multi-process (DDP) training;
validation (``val_every``) reports the loss and initial-flow EPE of ``val_dataset`` as the official script.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..errors import CheckpointError
from .config import ConfigError, TrainConfig

MODEL = "scoop"
#: ``model_options`` of a scoop run and their defaults (``train_scoop.py``'s).
OPTION_DEFAULTS = {
    "points": 2048,  # --nb_points
    "split": None,  # the dataset's split (None: its default)
    "dataset_options": {},  # loader keywords (e.g. {"max_depth": 35} for kitti-sf-flownet3d)
    "remove_ground": True,  # drop points the loader labels as ground (samples with ground1 / ground2)
    "frame": "lidar",  # input axes (motionflow.sceneflow.scoop.FRAMES)
    "graph": "kdtree",  # feature-graph construction
    "nb_iter": 1,  # --nb_iter
    "top_k": 64,  # --nb_neigh_cross_recon
    "max_distance": 10.0,  # transport support (m)
    "conf_weight": 0.1,  # --corr_conf_loss_weight
    "smooth_weight": 10.0,  # --smooth_flow_loss_weight
    "smooth_neighbors": 31,  # --nb_neigh_smooth_flow 32 = graph columns 1..32 of a 32-NN graph: 31 others
    "backward_weight": 0.0,  # --backward_dist_weight
    "lr_decay_step": None,  # step from which lr is multiplied by lr_decay
    "lr_decay": 0.1,
}
#: TrainConfig values a scoop run starts from when neither a schedule nor the user sets them.
CONFIG_DEFAULTS = {"lr": 1e-3, "batch_size": 4, "max_steps": 10000, "log_every": 25, "checkpoint_every": 2500}
LOG_FIELDS = ["step", "lr", "loss", "recon", "conf", "smooth", "epe", "seconds"]
_SUMS = ("loss", "recon", "conf", "smooth", "epe")


def scoop_options(cfg: TrainConfig) -> dict:
    """``OPTION_DEFAULTS`` updated with ``cfg.model_options``; unknown keys raise :class:`ConfigError`."""
    unknown = sorted(set(cfg.model_options) - set(OPTION_DEFAULTS))
    if unknown:
        raise ConfigError(f"config key 'model_options': unknown scoop options {unknown}; valid: {sorted(OPTION_DEFAULTS)}")
    return {**OPTION_DEFAULTS, **cfg.model_options}


def validate_scoop(cfg: TrainConfig) -> TrainConfig:
    """:func:`motionflow.train.config.validate` for ``model="scoop"`` (raises ConfigError naming the key)."""
    from ..datasets import DATASETS
    from ..sceneflow.point_features import GRAPH_METHODS
    from ..sceneflow.scoop import FRAMES

    opts = scoop_options(cfg)
    checks = [
        (cfg.dataset in DATASETS, "dataset", "one scene-flow dataset name (e.g. synthetic-lidar, kitti-sf-flownet3d, pairs)"),
        (cfg.max_steps >= 1, "max_steps", "an integer >= 1"), (cfg.batch_size >= 1, "batch_size", "an integer >= 1"),
        (cfg.lr > 0, "lr", "a learning rate > 0"), (cfg.log_every >= 1, "log_every", "an integer >= 1"),
        (cfg.checkpoint_every >= 1, "checkpoint_every", "an integer >= 1"), (cfg.val_every >= 0, "val_every", ">= 0"),
        (cfg.val_every == 0 or cfg.val_dataset is not None, "val_dataset", "a dataset name when val_every > 0"),
        (cfg.device is None or cfg.device.split(":")[0] in ("cpu", "cuda"), "device", "cpu, cuda or cuda:N"),
    ]
    for ok, key, expected in checks:
        if not ok:
            raise ConfigError(f"config key {key!r}: expected {expected}, found {getattr(cfg, key)!r}")
    option_checks = [
        (isinstance(opts["points"], int) and opts["points"] >= 33, "points", "an integer >= 33 (a 32-NN graph)"),
        (opts["frame"] in FRAMES, "frame", f"one of {list(FRAMES)}"),
        (opts["graph"] in GRAPH_METHODS, "graph", f"one of {list(GRAPH_METHODS)}"),
        (isinstance(opts["top_k"], int) and opts["top_k"] >= 1, "top_k", "an integer >= 1"),
        (0 < opts["smooth_neighbors"] <= 31, "smooth_neighbors", "1..31"),
        (isinstance(opts["dataset_options"], dict), "dataset_options", "a mapping"),
    ]
    for ok, key, expected in option_checks:
        if not ok:
            raise ConfigError(f"config key 'model_options.{key}': expected {expected}, found {opts[key]!r}")
    from ..datasets import dataset_class

    if dataset_class(cfg.dataset).kind != "scene":
        raise ConfigError(f"config key 'dataset': scoop trains on scene-flow pairs, {cfg.dataset!r} is not one")
    return cfg


class ScenePairs(torch.utils.data.Dataset):
    """A scene-flow dataset as fixed-size training pairs, indexed by :class:`ClipSampler` keys ``(position, seed)``.

    Each item: ``pc1``, ``pc2`` ``(points, 3)`` float32 (random subsets, ground removed when labelled) and
    ``flow`` ``(points, 3)`` (NaN where the data has no ground truth).
    """

    def __init__(self, dataset, points: int, remove_ground: bool = True):
        self.dataset, self.points, self.remove_ground = dataset, int(points), bool(remove_ground)

    def __len__(self) -> int:
        return len(self.dataset)

    def _pick(self, n: int, rng: np.random.Generator) -> np.ndarray:
        idx = rng.permutation(n)[: self.points]
        if len(idx) < self.points:  # pad by drawing again (deviation: the official loader returns fewer points)
            idx = np.concatenate([idx, rng.integers(0, n, self.points - len(idx))])
        return idx

    def __getitem__(self, key):
        position, seed = key
        s = self.dataset[int(position)]
        pc1, pc2 = s.pc1, s.pc2
        flow = s.flow if s.flow is not None else np.full_like(pc1, np.nan)
        if s.valid is not None:
            flow = np.where(s.valid[:, None], flow, np.nan)
        if self.remove_ground and s.ground1 is not None and s.ground2 is not None:
            pc1, flow, pc2 = pc1[~s.ground1], flow[~s.ground1], pc2[~s.ground2]
        if min(len(pc1), len(pc2)) < 33:
            raise ConfigError(f"dataset sample {s.id!r}: expected at least 33 points per cloud for the 32-NN graph, "
                              f"found {len(pc1)} / {len(pc2)}")
        rng = np.random.default_rng(int(seed))
        i1, i2 = self._pick(len(pc1), rng), self._pick(len(pc2), rng)
        return {"pc1": torch.from_numpy(np.ascontiguousarray(pc1[i1], dtype=np.float32)),
                "pc2": torch.from_numpy(np.ascontiguousarray(pc2[i2], dtype=np.float32)),
                "flow": torch.from_numpy(np.ascontiguousarray(flow[i1], dtype=np.float32))}


def build_pairs(cfg: TrainConfig, opts: dict, name: Optional[str] = None, options: Optional[dict] = None,
                root=None, split=None) -> ScenePairs:
    """The training (or, with ``name``, validation) pairs of a scoop run."""
    from ..datasets import get_dataset

    if name is None:
        name, root, split = cfg.dataset, cfg.root, opts["split"]
        options = dict(opts["dataset_options"])
        if name.startswith("synthetic"):
            options.update(cfg.synthetic)
    dataset = get_dataset(name, root, split=split, **(options or {}))
    return ScenePairs(dataset, opts["points"], opts["remove_ground"])


def scoop_namespace(cfg: TrainConfig, opts: dict) -> argparse.Namespace:
    """``train_scoop.py``'s 23 options for this run (what its ``model.tar`` files pickle as ``args``)."""
    return argparse.Namespace(
        dataset_name=cfg.dataset, nb_train_examples=-1, nb_val_examples=-1, same_val_test_kitti=1,
        batch_size_train=cfg.batch_size, batch_size_val=cfg.batch_size, nb_epochs=0, learning_rate=cfg.lr,
        use_corr_conf=True, linear_corr_conf=0, corr_conf_loss_weight=opts["conf_weight"], nb_points=opts["points"],
        nb_iter=opts["nb_iter"], nb_neigh_cross_recon=opts["top_k"], use_smooth_flow=opts["smooth_weight"] > 0,
        nb_neigh_smooth_flow=opts["smooth_neighbors"] + 1, smooth_flow_loss_weight=opts["smooth_weight"],
        backward_dist_weight=opts["backward_weight"], nb_workers=cfg.num_workers, log_dir=str(cfg.out),
        log_fname="log.csv", save_model_epoch=1, add_model_suff=False)


def _step_terms(model, batch, opts, device):
    from ..ops.smoothness import knn_graph
    from ..sceneflow.scoop import learned_correspondences, training_loss

    pc1, pc2, gt = (batch[k].to(device) for k in ("pc1", "pc2", "flow"))
    corr = learned_correspondences(model, pc1, pc2, opts["frame"], iters=opts["nb_iter"], top_k=opts["top_k"],
                                   max_distance=opts["max_distance"])
    graph = torch.stack([knn_graph(p, opts["smooth_neighbors"]) for p in pc1])
    loss, recon, conf, smooth = training_loss(corr, pc2, graph, opts["conf_weight"], opts["smooth_weight"],
                                              opts["backward_weight"])
    known = torch.isfinite(gt).all(-1)
    epe = (corr.flow.detach() - gt).norm(dim=-1)[known].mean() if bool(known.any()) else torch.tensor(float("nan"))
    return loss, {"loss": float(loss.detach()), "recon": float(recon.detach()), "conf": float(conf.detach()),
                  "smooth": float(smooth.detach()), "epe": float(epe)}


def _validate(model, cfg, opts, device) -> dict:
    pairs = build_pairs(cfg, opts, cfg.val_dataset, dict(cfg.val_options), cfg.val_root or cfg.root)
    n = len(pairs) if cfg.val_max_samples is None else min(len(pairs), int(cfg.val_max_samples))
    sums = dict.fromkeys(_SUMS, 0.0)
    model.eval()
    with torch.no_grad():
        for i in range(n):
            item = pairs[(i, cfg.seed + i)]
            _, terms = _step_terms(model, {k: v[None] for k, v in item.items()}, opts, device)
            for k in _SUMS:
                sums[k] += terms[k] / n
    model.train()
    return {"loss": sums["loss"], "epe": sums["epe"]}


def save_scoop_checkpoint(path, model, cfg: TrainConfig, opts: dict, optimizer, scheduler) -> Path:
    """Write SCOOP's own checkpoint layout (``train_scoop.py``) atomically."""
    from ..io.atomic import atomic_path

    path = Path(path)
    state = {"args": scoop_namespace(cfg, opts), "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def train_scoop(cfg: TrainConfig, resume: bool = False, stop_at: Optional[int] = None,
                callback: Optional[Callable[[int, dict], None]] = None):
    """Train SCOOP's feature net (see the module docstring); returns :class:`motionflow.train.loop.TrainResult`."""
    from ..sceneflow.point_features import PointFeatureNet, load_point_features, read_point_feature_checkpoint
    from .checkpoint import LOG_NAME, VAL_NAME, CsvLog, load_training_state, save_training_state, set_rng_state, write_config
    from .data import ClipSampler
    from .loop import TrainResult, _check_resume_config, _seed_everything, resolve_device

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("model 'scoop': multi-process (torchrun) training is not supported; run one process")
    opts = scoop_options(cfg)
    out = Path(cfg.out)
    state = None
    if resume:
        state = load_training_state(out)
        _check_resume_config(state["config"], cfg)
    elif (out / "train_state.pt").exists():
        raise CheckpointError(f"out: {str(out)!r} already holds a run (train_state.pt); pass resume=True / --resume, or a new folder")
    device = resolve_device(cfg, 0)
    _seed_everything(cfg.seed)
    model = PointFeatureNet(graph=opts["graph"])
    if cfg.init_checkpoint is not None and state is None:
        load_point_features(model, read_point_feature_checkpoint(cfg.init_checkpoint))
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    decay_step, decay = opts["lr_decay_step"], float(opts["lr_decay"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 1.0 if decay_step is None or step < decay_step else decay)
    start, window = 0, {}
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        start, window = int(state["step"]), dict(state.get("window") or {})

    pairs = build_pairs(cfg, opts)
    end = cfg.max_steps if stop_at is None else min(int(stop_at), cfg.max_steps)
    sampler = ClipSampler(len(pairs), cfg.batch_size, cfg.seed, 0, 1, start, end)
    loader = torch.utils.data.DataLoader(pairs, batch_sampler=sampler, num_workers=cfg.num_workers)
    log, val_log = CsvLog(out / LOG_NAME, LOG_FIELDS), CsvLog(out / VAL_NAME, ["step", "loss", "epe"])
    out.mkdir(parents=True, exist_ok=True)
    write_config(out, cfg.to_dict())
    log.truncate(start)
    val_log.truncate(start)

    def checkpoint(at: int):
        save_training_state(out, at, model, optimizer, scheduler, None, cfg.to_dict(), MODEL, extra={"window": dict(window)})
        save_scoop_checkpoint(out / "model.tar", model, cfg, opts, optimizer, scheduler)

    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.max_steps, initial=start, desc="train scoop", unit="step", disable=not cfg.progress)
    history, validation, step, t_window = [], [], start, time.perf_counter()
    for batch in loader:
        loss, terms = _step_terms(model, batch, opts, device)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        step += 1
        bar.update(1)
        window["n_steps"] = window.get("n_steps", 0) + 1
        for k in _SUMS:
            window[k] = window.get(k, 0.0) + terms[k]
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            n = window.pop("n_steps")
            row = {"step": step, "lr": lr, **{k: window[k] / n for k in _SUMS}, "seconds": time.perf_counter() - t_window}
            window, t_window = {}, time.perf_counter()
            history.append(row)
            log.append(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}", epe=f"{row['epe']:.3f}")
            if callback is not None:
                callback(step, row)
        if cfg.val_every and step % cfg.val_every == 0:
            vrow = {"step": step, **_validate(model, cfg, opts, device)}
            validation.append(vrow)
            val_log.append(vrow)
        if step % cfg.checkpoint_every == 0 or step == end:
            checkpoint(step)
    bar.close()
    if step == start and not (out / "model.pth").exists():
        checkpoint(step)
    return TrainResult(out, out / "model.pth", step, history, validation)
