"""Small dataclasses shared by every part of motionflow.

Conventions (see DESIGN.md section 2):

* Frames are RGB. In samples they are ``uint8`` arrays ``(T, 3, H, W)``; methods take float tensors in
  ``[0, 255]``.
* Optical flow has channel 0 = x (u, to the right) and channel 1 = y (v, down), in pixels, forward
  (frame t -> t+1) unless named ``backward``.
* Point clouds are ``(N, 3)`` float32 metres; scene flow ``(N, 3)`` metres per frame pair, defined on the
  points of ``pc1``, so ``pc1 + flow`` lands on the surface sampled by ``pc2``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from .errors import ShapeError


def _check(name: str, arr, shape: tuple, what: str) -> None:
    """Raise ShapeError unless ``arr.shape`` matches ``shape`` (None = any size)."""
    if arr is None:
        return
    got = tuple(arr.shape)
    if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got)):
        raise ShapeError(f"{name}: expected shape {what}, found {got}")


@dataclass
class FlowSample:
    """One optical-flow sample: a clip of T frames and the ground truth that exists for it.

    Attributes:
        id: stable, file-derived identifier (used to name predictions and resume evaluations),
            e.g. ``"alley_1/frame_0001"`` or ``"000000_10"``.
        frames: ``(T, 3, H, W)`` uint8 RGB.
        flow: ``(P, 2, H, W)`` float32 forward ground-truth flow, or None (test splits, videos).
        valid: ``(P, H, W)`` bool, True where ``flow`` is defined.
        occluded: ``(P, H, W)`` bool, True where the pixel is occluded in the next frame
            (Sintel ``occlusions/``; KITTI ``flow_occ`` valid and not ``flow_noc`` valid), or None.
        pair_index: length-P tuple: ``flow[p]`` is the flow from frame ``pair_index[p]`` to
            ``pair_index[p] + 1``. Defaults to ``(0, 1, ..., T-2)`` when flow is given for every pair.
        meta: free-form extras (dataset, scene, frame numbers, file paths).
    """

    id: str
    frames: np.ndarray
    flow: Optional[np.ndarray] = None
    valid: Optional[np.ndarray] = None
    occluded: Optional[np.ndarray] = None
    pair_index: Optional[tuple] = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(f"FlowSample {self.id!r} frames", self.frames, (None, 3, None, None), "(T, 3, H, W)")
        t, _, h, w = self.frames.shape
        if t < 1:
            raise ShapeError(f"FlowSample {self.id!r} frames: expected at least one frame, found 0")
        if self.flow is not None:
            _check(f"FlowSample {self.id!r} flow", self.flow, (None, 2, h, w), f"(P, 2, {h}, {w})")
            p = self.flow.shape[0]
            if self.pair_index is None:
                if p != t - 1:
                    raise ShapeError(
                        f"FlowSample {self.id!r}: {p} flows for {t} frames needs an explicit pair_index"
                    )
                self.pair_index = tuple(range(t - 1))
            if len(self.pair_index) != p:
                raise ShapeError(
                    f"FlowSample {self.id!r} pair_index: expected {p} entries, found {len(self.pair_index)}"
                )
            if self.valid is None:
                self.valid = np.isfinite(self.flow).all(axis=1)
            _check(f"FlowSample {self.id!r} valid", self.valid, (p, h, w), f"({p}, {h}, {w})")
            _check(f"FlowSample {self.id!r} occluded", self.occluded, (p, h, w), f"({p}, {h}, {w})")

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size(self) -> tuple:
        """``(H, W)`` of the frames."""
        return tuple(self.frames.shape[-2:])


@dataclass
class SceneFlowSample:
    """One lidar scene-flow sample: two sweeps and the ground truth that exists for them.

    Attributes:
        id: stable, file-derived identifier, e.g. ``"000042"`` or ``"<log>/<timestamp_ns>"``.
        pc1: ``(N, 3)`` float32 metres, the earlier sweep.
        pc2: ``(M, 3)`` float32 metres, the later sweep.
        flow: ``(N, 3)`` float32 metres per frame pair on pc1's points, or None.
        valid: ``(N,)`` bool, True where flow is labelled / should be scored.
        classes: ``(N,)`` int category ids (dataset specific), or None.
        ground1, ground2: ``(N,)`` / ``(M,)`` bool ground labels, or None.
        ego_motion: ``(4, 4)`` float64 rigid transform that maps pc1's coordinates to pc2's frame:
            for static points ``pc1 + flow == ego_motion @ pc1``. Identity if the sweeps share a frame.
        frame: which coordinates the clouds are in: ``"ego"`` (each sweep in its own ego frame,
            flow includes ego motion), ``"ego-compensated"`` (pc1 moved into pc2's frame, flow is
            object motion only), ``"world"`` or ``"sensor"``.
        meta: free-form extras (dataset, paths, timestamps, masks such as track masks).
    """

    id: str
    pc1: np.ndarray
    pc2: np.ndarray
    flow: Optional[np.ndarray] = None
    valid: Optional[np.ndarray] = None
    classes: Optional[np.ndarray] = None
    ground1: Optional[np.ndarray] = None
    ground2: Optional[np.ndarray] = None
    ego_motion: Optional[np.ndarray] = None
    frame: str = "ego"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(f"SceneFlowSample {self.id!r} pc1", self.pc1, (None, 3), "(N, 3)")
        _check(f"SceneFlowSample {self.id!r} pc2", self.pc2, (None, 3), "(M, 3)")
        n, m = len(self.pc1), len(self.pc2)
        _check(f"SceneFlowSample {self.id!r} flow", self.flow, (n, 3), f"({n}, 3)")
        if self.flow is not None and self.valid is None:
            self.valid = np.isfinite(self.flow).all(axis=1)
        _check(f"SceneFlowSample {self.id!r} valid", self.valid, (n,), f"({n},)")
        _check(f"SceneFlowSample {self.id!r} classes", self.classes, (n,), f"({n},)")
        _check(f"SceneFlowSample {self.id!r} ground1", self.ground1, (n,), f"({n},)")
        _check(f"SceneFlowSample {self.id!r} ground2", self.ground2, (m,), f"({m},)")
        _check(f"SceneFlowSample {self.id!r} ego_motion", self.ego_motion, (4, 4), "(4, 4)")


@dataclass
class FlowPrediction:
    """What an optical-flow method returns.

    Attributes:
        flow: ``(B, T-1, 2, H, W)`` float32 torch tensor of forward flows (frame t -> t+1), at the
            input resolution. Single-clip calls (``estimate_flow`` on ``(T, 3, H, W)``) drop B.
        backward: ``(B, T-1, 2, H, W)`` flows t+1 -> t where the method estimates them, else None.
        iterations: per-iteration forward flows for iterative networks (list of tensors like
            ``flow``), else None.
        meta: extras (method name, seconds, padding used...).
    """

    flow: Any
    backward: Any = None
    iterations: Optional[list] = None
    meta: dict = field(default_factory=dict)


@dataclass
class SceneFlowResult:
    """What a scene-flow method returns.

    Attributes:
        flow: ``(N, 3)`` float32 numpy array on pc1's points (NaN where a point was removed by
            preprocessing and no fill was asked for).
        iterations: optimizer steps taken (0 for closed-form methods).
        loss_trace: the loss values that were checked (every ``check_every`` steps), as floats.
        converged: True when early stopping (or a closed-form solve) ended the run, False when
            it stopped at ``max_iters`` or the time budget.
        seconds: wall-clock time of the estimate, preprocessing included.
        method: the registered method name.
        extras: method-specific outputs (ego motion, per-cluster transforms, removed-point masks).
    """

    flow: np.ndarray
    iterations: int = 0
    loss_trace: list = field(default_factory=list)
    converged: bool = True
    seconds: float = 0.0
    method: str = ""
    extras: dict = field(default_factory=dict)
