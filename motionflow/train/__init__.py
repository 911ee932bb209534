"""Training and fine-tuning of the optical-flow networks (RAFT, VideoFlow BOF/MOF, StreamFlow).

* :func:`train` (:mod:`.loop`): the training loop, one process or DDP under ``torchrun``, exact resume.
* :class:`TrainConfig`, :func:`load_config`, :func:`config_from_dict`, :data:`SCHEDULES` (:mod:`.config`).
* :func:`sequence_loss` (:mod:`.loss`), :func:`augment_clip` / :data:`AUGMENT_PRESETS` (:mod:`.augment`),
  :func:`build_mixture` / :data:`STAGES` (:mod:`.data`), :data:`TRAINERS` (:mod:`.networks`),
  :func:`save_weights` (:mod:`.checkpoint`).

Imports are lazy: ``import motionflow.train`` loads nothing heavy.
"""

from __future__ import annotations

from motionflow.lazy import lazy_exports

_LAZY = {
    "train": "motionflow.train.loop",
    "TrainResult": "motionflow.train.loop",
    "resume_config": "motionflow.train.loop",
    "TrainConfig": "motionflow.train.config",
    "ConfigError": "motionflow.train.config",
    "SCHEDULES": "motionflow.train.config",
    "load_config": "motionflow.train.config",
    "config_from_dict": "motionflow.train.config",
    "sequence_loss": "motionflow.train.loss",
    "SequenceLoss": "motionflow.train.loss",
    "AugmentParams": "motionflow.train.augment",
    "AUGMENT_PRESETS": "motionflow.train.augment",
    "augment_clip": "motionflow.train.augment",
    "STAGES": "motionflow.train.data",
    "build_mixture": "motionflow.train.data",
    "ClipSampler": "motionflow.train.data",
    "TRAINERS": "motionflow.train.networks",
    "save_weights": "motionflow.train.checkpoint",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_exports(__name__, _LAZY)
