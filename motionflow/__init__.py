"""motionflow: multi-frame optical flow for video and runtime-optimized scene flow for lidar.

Public API (imported lazily so that ``import motionflow`` stays light):

* :func:`estimate_flow` -- optical flow for a clip or video (``motionflow.inference``).
* :func:`estimate_scene_flow` -- scene flow for a pair of point clouds (``motionflow.sceneflow``).
* :func:`get_dataset` -- dataset loaders (``motionflow.datasets``).
* :func:`evaluate` -- benchmark runner (``motionflow.eval``).
"""

from __future__ import annotations

from motionflow.lazy import lazy_exports

__version__ = "0.1.0"

_LAZY = {
    "estimate_flow": "motionflow.inference",
    "estimate_scene_flow": "motionflow.sceneflow",
    "get_dataset": "motionflow.datasets",
    "evaluate": "motionflow.eval",
    "list_methods": "motionflow.registry",
    "get_optical_flow_method": "motionflow.registry",
    "get_scene_flow_method": "motionflow.registry",
}

__all__ = ["__version__", *_LAZY]


__getattr__ = lazy_exports(__name__, _LAZY)
