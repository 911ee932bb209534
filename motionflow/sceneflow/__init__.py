"""Runtime-optimised lidar scene flow: NSFP, Fast NSF, SCOOP-style refinement, baselines.

``estimate_scene_flow(pc1, pc2, method="rigid", **options)`` is the one-call API; every method is also a
registered object (``motionflow.registry.get_scene_flow_method(name, **options)``) that ``motionflow eval``
calls as ``method(pc1, pc2) -> SceneFlowResult``. Method modules are imported lazily (this module stays
light): ``zero``, ``nn``, ``icp`` (baselines), ``nsfp``, ``fnsf``, ``scoop``, ``rigid``, ``rigid+nsfp``.

Building blocks for other methods: :class:`motionflow.sceneflow.base.SceneFlowMethod` (ego compensation,
fit subsampling, seeding, timing), :mod:`~motionflow.sceneflow.stopping` (``StopCriteria``, the
best-iterate optimisation loop), :mod:`~motionflow.sceneflow.preprocess`, :mod:`~motionflow.sceneflow.ego`
(``estimate_ego_motion``: a bird's-eye-view correlative search, then plane-gated point-to-plane ICP, deskewing), :class:`motionflow.sceneflow.nsfp.NeuralPrior` (the coordinate MLP),
:mod:`~motionflow.sceneflow.longterm` (``propagate``: long-term chaining; ``accumulate``: dense clouds).
"""

from __future__ import annotations

import time
from typing import Optional

from .ego import EgoMotion, estimate_ego_motion
from .longterm import accumulate, propagate
from .stopping import StopCriteria

#: the default for driving lidar: learning-free rigid-motion flow (ICP-Flow style), measured best on the
#: Argoverse 2 sample (README "Scene flow"): EPE3D 7.3x lower and 146x faster than faithful NSFP.
DEFAULT_METHOD = "rigid"
#: the rigid methods: they estimate the ego motion by default (``extras["ego_motion"]``, so ``fill="rigid"``
#: needs no ``compensate_ego``) and remove the ground themselves (told not to when the caller's
#: preprocessing already did)
RIGID_METHODS = ("rigid", "rigid+nsfp")

__all__ = ["DEFAULT_METHOD", "RIGID_METHODS", "EgoMotion", "StopCriteria", "accumulate", "estimate_ego_motion",
           "estimate_scene_flow", "propagate"]

_PREPROCESS_KEYS = ("remove_duplicates", "box", "radius", "ground", "ground_height", "ground_distance")


def estimate_scene_flow(pc1, pc2, method: str = DEFAULT_METHOD, *, ego_motion=None, fill: str = "nan",
                        crop: Optional[float] = None, **options):
    """Scene flow from ``pc1 (N, 3)`` to ``pc2 (M, 3)`` (numpy or torch, metres).

    Args:
        method: a registered scene-flow method name (``rigid`` (default), ``rigid+nsfp``, ``fnsf``,
            ``nsfp``, ``scoop``, ``nn``, ``icp``, ``zero``).
        ego_motion: optional ``(4, 4)`` pc1 -> pc2 transform (used with ``compensate_ego=True``, and by
            ``fill="rigid"``).
        fill: flow of pc1 points removed by preprocessing: ``"nan"`` (default), ``"zero"``, ``"nearest"``,
            ``"rigid"`` (the ego flow; needs ``ego_motion`` or ``compensate_ego``).
        crop: shorthand for the AV2-style square crop ``|x|, |y| <= crop`` (metres).
        **options: preprocessing options (``remove_duplicates``, ``box``, ``radius``, ``ground``
            (``"height"``/``"ransac"``), ``ground_height``, ``ground_distance``; see
            :func:`motionflow.sceneflow.preprocess.preprocess_pair`) and the method's own options
            (``stop=StopCriteria(...)``, ``max_points``, ``compensate_ego``, ``seed``, ``device``, ...).

    Returns:
        :class:`motionflow.types.SceneFlowResult` whose ``flow`` is aligned with the caller's ``pc1``
        (NaN, or the fill, where a point was removed); ``extras["preprocess"]`` says what was removed.
    """
    from ..registry import get_scene_flow_method

    start = time.perf_counter()
    prep_opts = {k: options.pop(k) for k in _PREPROCESS_KEYS if k in options}
    if crop is not None:
        from .preprocess import square_box

        prep_opts["box"] = square_box(float(crop))
    if method in RIGID_METHODS and prep_opts.get("ground") not in (None, "none"):
        # the ground is gone already: a second cut would take car bottoms for ground
        options.setdefault("ground_removal", "none")
    if fill == "rigid" and ego_motion is None and not options.get("compensate_ego") and method not in RIGID_METHODS:
        from ..errors import ShapeError

        raise ShapeError(f"fill='rigid': method {method!r} needs ego_motion= or compensate_ego=True "
                         f"(the ego flow is the fill; {', '.join(RIGID_METHODS)} estimate it themselves)")
    est = get_scene_flow_method(method, **options)
    nonfinite = False
    if not prep_opts:
        from .preprocess import finite_mask

        nonfinite = not finite_mask(pc1).all() or not finite_mask(pc2).all()
    if not prep_opts and not nonfinite:
        result = est(pc1, pc2, ego_motion=ego_motion)
        result.seconds = time.perf_counter() - start
        return result
    from .preprocess import preprocess_pair

    prep = preprocess_pair(pc1, pc2, **prep_opts)
    result = est(prep.pc1, prep.pc2, ego_motion=ego_motion)
    T = ego_motion if ego_motion is not None else result.extras.get("ego_motion")
    result.flow = prep.scatter(result.flow, fill=fill, points=pc1, transform=T)
    result.extras["preprocess"] = prep.removed
    result.extras["keep1"] = prep.keep1
    result.seconds = time.perf_counter() - start
    return result


