"""Training-free optical flow (the embedded default) and OpenCV baselines.

=====================  =====================================================================
module                 what it holds
=====================  =====================================================================
``method``             ``ClassicalFlow`` (registered ``classical``), presets, temporal prediction
``matching``           DIS patch candidates and their fusion by matching cost
``interpolation``      edge-aware (EpicFlow-style) filling of unreliable pixels
``variational``        coarse-to-fine robust variational refinement
``opencv``             ``OpenCVDIS`` / ``OpenCVFarneback`` baselines
``reynolds``           ReynoldsFlow (conventional flow + irrotational Reynolds flow), ReynoldsFlow+ image
=====================  =====================================================================

Only :mod:`motionflow.ops`, :mod:`motionflow.types` and :mod:`motionflow.errors` are imported from
the package (and :mod:`motionflow.registry`, lazily, to build ``reynolds``' base flow); OpenCV is
imported lazily.
"""

from __future__ import annotations

from motionflow.lazy import lazy_exports

_WHERE = {
    "ClassicalFlow": "method",
    "ClassicalConfig": "method",
    "PRESETS": "method",
    "classical_flow": "method",
    "temporal_prediction": "method",
    "PatchConfig": "matching",
    "dis_patch_flow": "matching",
    "fuse_candidates": "matching",
    "edge_aware_fill": "interpolation",
    "VariationalParams": "variational",
    "refine_flow": "variational",
    "OpenCVDIS": "opencv",
    "OpenCVFarneback": "opencv",
    "ReynoldsFlow": "reynolds",
    "ReynoldsFlowResult": "reynolds",
    "reynolds_flow": "reynolds",
    "reynolds_rgb": "reynolds",
    "reynolds_scales": "reynolds",
}

__all__ = sorted(_WHERE)


__getattr__ = lazy_exports(__name__, _WHERE)
