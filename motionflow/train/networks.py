"""How each network is trained: its training forward on a clip and the flows it is supervised on.

The method adapter (:mod:`motionflow.models.method`) runs networks for inference; training needs the
per-iteration predictions of every flow the network estimates in one pass, with gradients, and to know
which ground truth each one matches. :data:`TRAINERS` maps a network name to a
:class:`NetworkTrainer`:

==================  ==========  ===============================================================  ========
network             clip T      supervised flows of one pass                                      flows
==================  ==========  ===============================================================  ========
``raft``            any >= 2    forward flow of every pair (the T-1 pairs run as a batch)         mean
``videoflow-bof``   3           centre -> next (forward of pair 1), centre -> previous            mean
                                (backward of pair 0)
``videoflow-mof``   any >= 3    forward and backward flows of the inner frames 1..T-2             mean
``streamflow``      4 (model)   forward flows of the T-1 pairs (SIM)                              sum
==================  ==========  ===============================================================  ========

"flows" is the loss's ``flow_reduction`` (VideoFlow's loss averages over all predicted flows;
StreamFlow's paper sums the per-flow sequence losses).

**Backward flows** are supervised when the sample carries backward ground truth (a training sample
with ``meta["backward_flow"]`` ``(P, 2, H, W)`` and ``meta["backward_valid"]`` for the same
``pair_index`` as ``flow``; FlyingThings provides it). Our loaders (Sintel, KITTI, chairs, the synthetic
generator) give forward flow only; then the backward predictions get no loss (VideoFlow's official
Sintel and KITTI fine-tuning uses the same data and so has the same limitation for Sintel/KITTI pairs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from ..errors import ShapeError, UnknownNameError


@dataclass
class TrainPrediction:
    """Per-iteration predictions of one training pass.

    Attributes:
        iterations: one tensor ``(B, F, 2, H, W)`` per refinement iteration (first to last).
        targets: length-F list of ``(direction, pair)``: flow ``f`` is the ``"forward"`` flow of pair
            ``pair`` (frame ``pair`` -> ``pair + 1``) or its ``"backward"`` flow (``pair + 1`` -> ``pair``).
    """

    iterations: list
    targets: list


@dataclass(frozen=True)
class NetworkTrainer:
    """Training recipe of one network.

    Attributes:
        name: network name (``motionflow.models.NETWORKS``).
        forward: ``forward(model, frames (B, T, 3, H, W) in [0, 255], iters) -> TrainPrediction``.
        check_frames: ``check_frames(model, T)`` raises ShapeError for a clip length the network cannot train on.
        default_frames: the clip length used when the config does not set one.
        flow_reduction: ``"mean"`` or ``"sum"`` (see the module docstring).
        spec: ``spec() -> NetworkSpec`` of the method adapter (validation runs through it).
    """

    name: str
    forward: Callable[..., TrainPrediction]
    check_frames: Callable[[nn.Module, int], None]
    default_frames: int
    flow_reduction: str
    spec: Callable


# --------------------------------------------------------------------------------------- RAFT
def _raft_forward(model, frames: torch.Tensor, iters: int) -> TrainPrediction:
    b, t = frames.shape[:2]
    first = frames[:, :-1].flatten(0, 1)
    second = frames[:, 1:].flatten(0, 1)
    preds = model(first, second, iters=iters)
    its = [p.reshape(b, t - 1, *p.shape[1:]) for p in preds]
    return TrainPrediction(its, [("forward", k) for k in range(t - 1)])


def _raft_frames(model, t: int) -> None:
    if t < 2:
        raise ShapeError(f"frames: raft trains on clips of T >= 2 frames (its pairs), found T={t}")


def _raft_spec():
    from ..models.raft import RAFT_SPEC

    return RAFT_SPEC


# --------------------------------------------------------------------------------------- VideoFlow
def _bof_forward(model, frames: torch.Tensor, iters: int) -> TrainPrediction:
    out = model(frames, iters=iters)
    # flows axis 1: 0 = centre -> next (forward of pair 1), 1 = centre -> previous (backward of pair 0)
    return TrainPrediction(list(out.flow_predictions), [("forward", 1), ("backward", 0)])


def _bof_frames(model, t: int) -> None:
    if t != 3:
        raise ShapeError(f"frames: videoflow-bof trains on clips of T=3 frames (t-1, t, t+1), found T={t}")


def _mof_forward(model, frames: torch.Tensor, iters: int) -> TrainPrediction:
    t = frames.shape[1]
    out = model(frames, iters=iters)
    inner = t - 2
    targets = [("forward", k) for k in range(1, t - 1)] + [("backward", k - 1) for k in range(1, t - 1)]
    assert len(targets) == 2 * inner
    return TrainPrediction(list(out.flow_predictions), targets)


def _mof_frames(model, t: int) -> None:
    if t < 3:
        raise ShapeError(f"frames: videoflow-mof trains on clips of T >= 3 frames (official: 5), found T={t}")


def _videoflow_spec(name: str):
    def spec():
        from ..models.videoflow import _spec

        return _spec(name)

    return spec


# --------------------------------------------------------------------------------------- StreamFlow
def _streamflow_forward(model, frames: torch.Tensor, iters: int) -> TrainPrediction:
    t = frames.shape[1]
    out = model(frames, iters=iters, all_iterations=True)
    return TrainPrediction(list(out.predictions), [("forward", k) for k in range(t - 1)])


def _streamflow_frames(model, t: int) -> None:
    want = getattr(model, "frames", 4)
    if t != want:
        raise ShapeError(f"frames: this streamflow network was built for SIM groups of T={want} frames, found T={t}")


def _streamflow_spec():
    from ..models.streamflow import streamflow_spec

    return streamflow_spec()


TRAINERS: dict[str, NetworkTrainer] = {
    "raft": NetworkTrainer("raft", _raft_forward, _raft_frames, 2, "mean", _raft_spec),
    "videoflow-bof": NetworkTrainer("videoflow-bof", _bof_forward, _bof_frames, 3, "mean", _videoflow_spec("videoflow-bof")),
    "videoflow-mof": NetworkTrainer("videoflow-mof", _mof_forward, _mof_frames, 5, "mean", _videoflow_spec("videoflow-mof")),
    "streamflow": NetworkTrainer("streamflow", _streamflow_forward, _streamflow_frames, 4, "sum", _streamflow_spec),
}


def get_trainer(name: str) -> NetworkTrainer:
    if name not in TRAINERS:
        raise UnknownNameError(f"model: unknown network {name!r}; valid choices: {', '.join(sorted(TRAINERS))}")
    return TRAINERS[name]


def select_targets(
    targets: list,
    flow: torch.Tensor,
    valid: torch.Tensor,
    backward: Optional[torch.Tensor] = None,
    backward_valid: Optional[torch.Tensor] = None,
):
    """Ground truth for the predicted flows.

    Args:
        targets: :attr:`TrainPrediction.targets`.
        flow, valid: ``(B, T-1, 2, H, W)`` / ``(B, T-1, H, W)`` forward ground truth of every pair
            (valid False for pairs without ground truth).
        backward, backward_valid: the same for backward flows, or None.

    Returns:
        ``(keep, gt (B, F', 2, H, W), valid (B, F', H, W))``: indices of the predicted flows that are
        supervised and their ground truth. Every forward flow is kept (a pair without ground truth in a
        sample is all-invalid there and adds zero, as in the official losses); backward flows are kept
        only when backward ground truth is given. The choice never depends on the batch content, so
        every data-parallel rank builds the same loss.
    """
    keep, gts, vals = [], [], []
    for f, (direction, pair) in enumerate(targets):
        if direction == "forward":
            g, v = flow[:, pair], valid[:, pair]
        elif backward is not None:
            g, v = backward[:, pair], backward_valid[:, pair]
        else:
            continue
        keep.append(f)
        gts.append(g)
        vals.append(v)
    if not keep:
        return keep, None, None
    return keep, torch.stack(gts, 1), torch.stack(vals, 1)


def freeze_batchnorm(model: nn.Module) -> None:
    """Put every BatchNorm in eval mode (RAFT ``freeze_bn``: fine-tuning stages keep the statistics)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
