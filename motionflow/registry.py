"""Name -> implementation tables for methods, kept as plain, greppable dicts.

Each entry maps a public name to ``"module:factory"``; the module is imported only when the name is
used, so ``import motionflow`` stays light (no open3d / cv2 at import time).

Factories take keyword options and return a callable method object:

* optical flow: ``method(frames)`` with ``frames`` a float tensor ``(B, T, 3, H, W)`` in [0, 255]
  returns a :class:`motionflow.types.FlowPrediction` with ``flow`` ``(B, T-1, 2, H, W)``. Every
  optical-flow method object also has ``name`` and ``clip_length`` (how many frames it prefers per
  call: 2 for pairwise methods, 3 for VideoFlow BOF, 4 for StreamFlow, 5 for VideoFlow MOF).
* scene flow: ``method(pc1, pc2)`` with ``(N, 3)`` / ``(M, 3)`` float32 arrays (numpy or torch)
  returns a :class:`motionflow.types.SceneFlowResult`; it has ``name``.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from .errors import UnknownNameError

OPTICAL_FLOW_METHODS: dict[str, str] = {
    "classical": "motionflow.classical.method:ClassicalFlow",
    "opencv-dis": "motionflow.classical.opencv:OpenCVDIS",
    "opencv-farneback": "motionflow.classical.opencv:OpenCVFarneback",
    "reynolds": "motionflow.classical.reynolds:ReynoldsFlow",
    "raft": "motionflow.models.raft:create_raft_method",
    "videoflow-bof": "motionflow.models.videoflow:create_bof_method",
    "videoflow-mof": "motionflow.models.videoflow:create_mof_method",
    "streamflow": "motionflow.models.streamflow:create_streamflow_method",
}

SCENE_FLOW_METHODS: dict[str, str] = {
    "zero": "motionflow.sceneflow.baselines:ZeroFlow",
    "nn": "motionflow.sceneflow.baselines:NearestNeighbourFlow",
    "icp": "motionflow.sceneflow.baselines:ICPFlow",
    "nsfp": "motionflow.sceneflow.nsfp:NSFP",
    "fnsf": "motionflow.sceneflow.fnsf:FastNSF",
    "scoop": "motionflow.sceneflow.scoop:SCOOPRefine",
    "flot": "motionflow.sceneflow.flot:FLOT",
    "rigid": "motionflow.sceneflow.rigid:RigidFlow",
    "rigid+nsfp": "motionflow.sceneflow.rigid:RigidNSFP",
}


def _resolve(table: dict[str, str], kind: str, name: str) -> Callable[..., Any]:
    if name not in table:
        raise UnknownNameError(
            f"unknown {kind} method {name!r}; valid choices: {', '.join(sorted(table))}"
        )
    module_name, attr = table[name].split(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr)


def _build(table: dict[str, str], kind: str, name: str, options: dict):
    """The factory of ``name`` called with ``options`` (:func:`motionflow.factory.build`: unknown options
    and refused values are one-line errors naming the method)."""
    from .factory import build

    return build(_resolve(table, kind, name), options, f"{kind} method {name!r}")


def get_optical_flow_method(name: str, **options: Any):
    """Build the optical-flow method registered as ``name`` with keyword ``options``."""
    return _build(OPTICAL_FLOW_METHODS, "optical-flow", name, options)


def get_scene_flow_method(name: str, **options: Any):
    """Build the scene-flow method registered as ``name`` with keyword ``options``."""
    return _build(SCENE_FLOW_METHODS, "scene-flow", name, options)


def scene_flow_preprocessing():
    """The scene-flow preprocessing module (:mod:`motionflow.sceneflow.preprocess`: crop, ground removal,
    subsampling, scatter of the flow back onto every point), imported on first use: evaluation protocols
    prepare a method's clouds with it without importing the scene-flow half."""
    return importlib.import_module("motionflow.sceneflow.preprocess")


def list_methods() -> dict[str, list[str]]:
    """All registered method names, by family."""
    return {"optical_flow": sorted(OPTICAL_FLOW_METHODS), "scene_flow": sorted(SCENE_FLOW_METHODS)}
