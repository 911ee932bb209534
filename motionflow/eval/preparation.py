"""A method's input under a protocol: the optical window it runs, the clouds a scene-flow method sees.

Optical (:func:`predict_optical`): the sample's clip is the protocol's window (the dataset options of
:mod:`.protocols` cut it: VideoFlow's 3 / 5 frames, StreamFlow's group of 4, a pair). A protocol with
``single_window`` runs a network method (one that takes ``windows=``, e.g.
:class:`~motionflow.models.method.NetworkFlowMethod`) on exactly that window, ``windows=[(0, T)]``: one
forward pass, with the real neighbouring frames (and only the edge repetition the official list
itself has). Other methods are called on the clip as it is. The flows of the scored pairs
(``sample.pair_index``) are returned.

Scene flow (:func:`predict_scene`): a :class:`~.protocols.ScenePreparation` removes the ground (the
sample's labels, else a RANSAC plane), crops, draws the points a sampled protocol fits and scores,
hands the method the ego motion, and puts the method's flow back on every point of pc1 with the
protocol's fill (:meth:`motionflow.sceneflow.preprocess.Preprocessed.scatter`). The scene-flow half
is reached through :func:`motionflow.registry.scene_flow_preprocessing` only.
"""

from __future__ import annotations

import inspect
import zlib
from typing import Optional

import numpy as np

from ..errors import ShapeError
from .protocols import Protocol, ScenePreparation


def _takes(fn, keyword: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return keyword in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _as_numpy(flow) -> np.ndarray:
    flow = getattr(flow, "flow", flow)
    return flow.detach().cpu().numpy() if hasattr(flow, "detach") else np.asarray(flow)


# -- optical ---------------------------------------------------------------------------------------
def predict_optical(method, sample, protocol: Protocol, device: str = "cpu") -> tuple[np.ndarray, dict]:
    """The ``(P, 2, H, W)`` flows of ``sample``'s scored pairs and the note counts of the call."""
    import torch

    t, _, h, w = sample.frames.shape
    frames = torch.from_numpy(np.ascontiguousarray(sample.frames)).float()[None].to(device)
    kwargs, counts = {}, {}
    if protocol.single_window and _takes(method.__call__, "windows"):
        if t == protocol.clip_frames:
            kwargs["windows"] = [(0, t)]  # the official window, one forward pass
        else:
            counts["note:short_clip"] = 1
    with torch.no_grad():
        flow = _as_numpy(method(frames, **kwargs))
    if flow.shape != (1, t - 1, 2, h, w):
        raise ShapeError(f"method output for sample {sample.id!r}: expected flow of shape (1, {t - 1}, 2, {h}, {w}), found {flow.shape}")
    pairs = sample.pair_index if sample.pair_index is not None else range(t - 1)
    return flow[0][list(pairs)], counts


# -- scene flow ------------------------------------------------------------------------------------
def _draw(keep: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    idx = np.flatnonzero(keep)
    if len(idx) <= count:
        return keep
    out = np.zeros_like(keep)
    out[np.sort(rng.choice(idx, size=count, replace=False))] = True
    return out


def _sample_rng(sample_id: str) -> np.random.Generator:
    """A generator seeded by the sample id: the same points in every process and every rerun."""
    return np.random.default_rng(zlib.crc32(str(sample_id).encode("utf-8")))


def sampled_points(prep: ScenePreparation, sample) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """The ``(N,)`` / ``(M,)`` masks of the points a sampled protocol fits on (and scores, pc1), or None."""
    if not prep.sample_points:
        return None, None
    keep1 = np.isfinite(sample.pc1).all(axis=1)
    keep2 = np.isfinite(sample.pc2).all(axis=1)
    rng = _sample_rng(sample.id)
    if prep.shared_index:  # FastNSF: randperm(min(n1, n2))[:count] applied to both clouds
        n = min(len(keep1), len(keep2))
        common = np.zeros(n, bool)
        common[rng.permutation(n)[: prep.sample_points]] = True
        return keep1 & np.pad(common, (0, len(keep1) - n)), keep2 & np.pad(common, (0, len(keep2) - n))
    return _draw(keep1, prep.sample_points, rng), _draw(keep2, prep.sample_points, rng)


def _ground(pre, prep: ScenePreparation, points: np.ndarray, labels, keep: np.ndarray, counts: dict) -> Optional[np.ndarray]:
    if prep.ground is None:
        return None
    if prep.ground == "labels" and labels is not None:
        return np.asarray(labels, bool)
    counts["prep:ransac_ground"] = counts.get("prep:ransac_ground", 0) + 1
    mask, _ = pre.ground_mask_ransac(np.where(keep[:, None], points, np.nan))
    return mask


def prepare_clouds(prep: ScenePreparation, sample, counts: dict):
    """The kept points of both clouds as a :class:`~motionflow.sceneflow.preprocess.Preprocessed`."""
    from ..registry import scene_flow_preprocessing

    pre = scene_flow_preprocessing()
    kept = []
    removed = {}
    for name, points, labels, sampled in zip(("pc1", "pc2"), (sample.pc1, sample.pc2), (sample.ground1, sample.ground2),
                                             sampled_points(prep, sample)):
        keep = pre.finite_mask(points)
        steps = {"nonfinite": int((~keep).sum())}
        if prep.box is not None:
            crop = pre.crop_mask(points, box=prep.box)
            steps["crop"] = int((keep & ~crop).sum())
            keep &= crop
        ground = _ground(pre, prep, points, labels, keep, counts)
        if ground is not None:
            steps["ground"] = int((keep & ground).sum())
            keep &= ~ground
        if sampled is not None:
            steps["subsample"] = int((keep & ~sampled).sum())
            keep &= sampled
        if not keep.any():
            raise ShapeError(f"sample {sample.id!r}: the protocol's preparation left no point of {name} ({steps})")
        kept.append(keep)
        removed[name] = steps
    return pre.Preprocessed(pc1=sample.pc1[kept[0]].astype(np.float32), pc2=sample.pc2[kept[1]].astype(np.float32),
                            keep1=kept[0], keep2=kept[1], removed=removed)


def _call_scene(method, pc1, pc2, ego_motion) -> np.ndarray:
    if ego_motion is not None and _takes(method.__call__, "ego_motion"):
        out = method(pc1, pc2, ego_motion=ego_motion)
    else:
        out = method(pc1, pc2)
    return _as_numpy(out)


def predict_scene(method, sample, prep: ScenePreparation) -> tuple[np.ndarray, dict]:
    """The ``(N, 3)`` flow on every point of ``sample.pc1`` under ``prep``, and the note counts."""
    counts: dict = {}
    ego = sample.ego_motion if prep.ego_motion else None
    if not prep.active:
        flow = _call_scene(method, sample.pc1, sample.pc2, None)
    else:
        clouds = prepare_clouds(prep, sample, counts)
        kept_flow = _call_scene(method, clouds.pc1, clouds.pc2, ego)
        if kept_flow.shape != (len(clouds.pc1), 3):
            raise ShapeError(f"method output for sample {sample.id!r}: expected flow of shape ({len(clouds.pc1)}, 3) "
                             f"on the prepared points, found {kept_flow.shape}")
        fill = prep.fill
        if fill == "ego" and sample.ego_motion is None:
            fill = "nearest"
            counts["prep:no_ego_fill"] = 1
        flow = clouds.scatter(kept_flow, fill="rigid" if fill == "ego" else fill, points=sample.pc1,
                              transform=sample.ego_motion)
    if flow.shape != (len(sample.pc1), 3):
        raise ShapeError(f"method output for sample {sample.id!r}: expected flow of shape ({len(sample.pc1)}, 3), found {flow.shape}")
    return flow, counts


def scored_points(prep: ScenePreparation, sample) -> Optional[np.ndarray]:
    """The points a sampled protocol scores (its fit points of pc1), None for every point."""
    return sampled_points(prep, sample)[0]


def method_options(prep: ScenePreparation, user: dict) -> dict:
    """The method's options: the preparation's defaults, the user's on top."""
    return {**dict(prep.method_options), **user}


__all__ = ["method_options", "predict_optical", "predict_scene", "prepare_clouds", "sampled_points", "scored_points"]
