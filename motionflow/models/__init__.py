"""Learned optical-flow networks with the official module names, and strict checkpoint loading.

==================  ===========================================  =====================================
name                builder (``module:function``)                 official weights
==================  ===========================================  =====================================
``raft``            ``motionflow.models.raft:build_raft``        princeton-vl/RAFT (``raft-*.pth``)
``videoflow-bof``   ``motionflow.models.videoflow:build_bof``    XiaoyuShi97/VideoFlow (``BOF_*.pth``)
``videoflow-mof``   ``motionflow.models.videoflow:build_mof``    XiaoyuShi97/VideoFlow (``MOF_*.pth``)
``streamflow``      ``motionflow.models.streamflow:build_streamflow``  littlespray/StreamFlow
==================  ===========================================  =====================================

``create_model(name, checkpoint=path)`` returns the bare ``nn.Module`` (eval mode) with the official
weights loaded strictly; without a checkpoint it returns the network with its own random
initialisation (for training). The registered optical-flow *methods* (padding, windowing, autocast...)
are built by :mod:`motionflow.models.method`.

Checkpoint protocol of a network class (read by :func:`load_official_checkpoint`), all optional:

* ``checkpoint_aliases``: ``{alias checkpoint key: canonical checkpoint key}`` (RAFT's twice-registered
  BatchNorm);
* ``checkpoint_unused_keys``: checkpoint keys the official files carry but the network never reads;
* ``checkpoint_key_map(self) -> dict | None``: ``{checkpoint key: model key}`` (default identity).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Optional, Union

from ..errors import UnknownNameError
from ..lazy import lazy_exports
from .weights import (
    OFFICIAL_WEIGHTS,
    LoadReport,
    load_checkpoint,
    no_checkpoint_error,
    read_checkpoint,
    unwrap_state_dict,
)

#: network name -> "module:builder"; builders take keyword options and return an ``nn.Module``.
NETWORKS: dict[str, str] = {
    "raft": "motionflow.models.raft:build_raft",
    "videoflow-bof": "motionflow.models.videoflow:build_bof",
    "videoflow-mof": "motionflow.models.videoflow:build_mof",
    "streamflow": "motionflow.models.streamflow:build_streamflow",
}

__all__ = [
    "NETWORKS",
    "OFFICIAL_WEIGHTS",
    "LoadReport",
    "OnnxFlowMethod",
    "create_model",
    "export_onnx",
    "load_checkpoint",
    "load_official_checkpoint",
    "no_checkpoint_error",
    "read_checkpoint",
    "unwrap_state_dict",
]

#: ONNX export and the ONNX Runtime backend, imported on first use (:mod:`.export`, :mod:`.onnx_runtime`).
__getattr__ = lazy_exports(__name__, {"export_onnx": "export", "OnnxFlowMethod": "onnx_runtime"})


def _builder(name: str):
    if name not in NETWORKS:
        raise UnknownNameError(f"unknown network {name!r}; valid choices: {', '.join(sorted(NETWORKS))}")
    module_name, attr = NETWORKS[name].split(":")
    return getattr(importlib.import_module(module_name), attr)


def load_official_checkpoint(model, checkpoint, allow_pickle: bool = False) -> LoadReport:
    """:func:`load_checkpoint` with the key map, aliases and unused keys the network class declares."""
    key_map_fn = getattr(model, "checkpoint_key_map", None)
    return load_checkpoint(
        model,
        checkpoint,
        key_map=key_map_fn() if callable(key_map_fn) else None,
        aliases=getattr(model, "checkpoint_aliases", None),
        unused_keys=getattr(model, "checkpoint_unused_keys", ()),
        allow_pickle=allow_pickle,
    )


def create_model(
    name: str,
    checkpoint: Optional[Union[str, Path, dict]] = None,
    allow_pickle: bool = False,
    **options: Any,
):
    """Build network ``name`` and, if given, load ``checkpoint`` (a path or a state dict) strictly.

    Args:
        name: ``raft``, ``videoflow-bof``, ``videoflow-mof`` or ``streamflow``.
        checkpoint: official checkpoint file (``module.``-prefixed / ``{'model': ...}`` layouts load),
            or None for the random initialisation.
        allow_pickle: see :func:`load_checkpoint`.
        options: constructor options of the network (e.g. ``decoder_depth`` for VideoFlow).

    Returns:
        The ``nn.Module`` in eval mode.

    Raises:
        UnknownNameError: unknown ``name``.
        CheckpointError: the checkpoint does not match (lists missing / unexpected / mis-shaped keys).
    """
    model = _builder(name)(**options)
    if checkpoint is not None:
        load_official_checkpoint(model, checkpoint, allow_pickle=allow_pickle)
    return model.eval()
