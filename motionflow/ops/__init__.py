"""Differentiable primitives shared by optical flow and scene flow.

Plain functions first, thin ``nn.Module`` twins where a model needs state. Names are resolved lazily
from the submodule that defines them (one concept per module):

==========================  ===================================================================
module                      what it holds
==========================  ===================================================================
``warp``                    backward_warp, forward_splat, compose_flows, coords_grid
``occlusion``               occlusion_mask (forward-backward consistency)
``correlation``             all_pairs_correlation, CorrPyramid, OnDemandCorrPyramid
``upsample``                convex_upsample, resize_flow
``neighbors``               knn (KD-tree indices, torch distances)
``chamfer``                 chamfer_distance (NSFP truncation)
``distance``                DistanceTransform (exact EDT + trilinear query)
``smoothness``              knn_smoothness (SCOOP)
``transport``               sinkhorn (log-domain optimal transport, balanced / unbalanced),
                            sinkhorn_scaling (SCOOP / FLOT's multiplicative form)
``geometry``                SE(3) helpers, ego_flow, camera projection
==========================  ===================================================================
"""

from __future__ import annotations

from motionflow.lazy import lazy_exports

_WHERE = {
    "backward_warp": "warp",
    "forward_splat": "warp",
    "compose_flows": "warp",
    "coords_grid": "warp",
    "BackwardWarp": "warp",
    "occlusion_mask": "occlusion",
    "all_pairs_correlation": "correlation",
    "CorrPyramid": "correlation",
    "OnDemandCorrPyramid": "correlation",
    "convex_upsample": "upsample",
    "resize_flow": "upsample",
    "ConvexUpsample": "upsample",
    "knn": "neighbors",
    "chamfer_distance": "chamfer",
    "ChamferDistance": "chamfer",
    "DistanceTransform": "distance",
    "knn_smoothness": "smoothness",
    "sinkhorn": "transport",
    "sinkhorn_scaling": "transport",
    "apply_transform": "geometry",
    "invert_transform": "geometry",
    "compose_transforms": "geometry",
    "ego_flow": "geometry",
    "project_points": "geometry",
    "scene_flow_to_optical_flow": "geometry",
    "backproject_depth": "geometry",
}

__all__ = sorted(_WHERE)


__getattr__ = lazy_exports(__name__, _WHERE)
