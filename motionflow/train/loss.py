"""The sequence loss of RAFT / VideoFlow / StreamFlow and the per-step flow metrics.

**Sequence loss** (RAFT ``train.py:sequence_loss``, VideoFlow ``core/loss.py:sequence_loss``,
StreamFlow paper Eq. 11). The network returns one full-resolution flow per refinement iteration,
``f_1 .. f_N``; every iteration is supervised with an L1 loss, later ones weighted more::

    loss = sum_i gamma^(N - i) * mean(valid * |f_i - gt|)

* ``valid`` is the dataset's mask **and** ``||gt|| < max_flow`` (400 px: "exclude extremely large
  displacements");
* the mean runs over **every** element of ``(B, F, 2, H, W)``, invalid ones included (they contribute 0):
  exactly ``(valid[:, None] * i_loss).mean()`` of the official code, so sparse KITTI ground truth
  gives a smaller loss scale, as it does officially;
* ``F`` flows per sample (a multi-frame network predicts several): ``flow_reduction="mean"`` averages
  them (VideoFlow MOF/BOF: one ``.mean()`` over ``(B, N, 2, H, W)``; RAFT on a clip: the pairs are
  independent samples), ``"sum"`` adds the per-flow losses (StreamFlow: "sum over the T-1 flows").

**Metrics** of the last iteration over the valid pixels (as the official loss functions log them):
``epe`` (mean end-point error) and ``px1`` / ``px3`` / ``px5`` (share of valid pixels with epe below 1 /
3 / 5 px, strict ``<``: the thresholds of :data:`motionflow.eval.optical.PX_THRESHOLDS`). They are also
returned as exact sums and a pixel count (:func:`flow_metric_sums`) so data-parallel workers can add
them up before dividing.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import ShapeError
from ..eval.optical import PX_THRESHOLDS

#: RAFT / VideoFlow ``MAX_FLOW``: ground truth at least this long (px) is excluded from the loss.
MAX_FLOW = 400.0
#: RAFT's default iteration weight (0.85 for the Sintel and KITTI fine-tuning stages).
GAMMA = 0.8
FLOW_REDUCTIONS = ("mean", "sum")
METRIC_NAMES = ("epe",) + tuple(PX_THRESHOLDS)


def _as_flows(x: torch.Tensor, name: str) -> torch.Tensor:
    """``(B, 2, H, W)`` -> ``(B, 1, 2, H, W)``; ``(B, F, 2, H, W)`` unchanged."""
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"{name}: expected a torch tensor (B, F, 2, H, W), found {type(x).__name__}")
    if x.ndim == 4 and x.shape[1] == 2:
        return x[:, None]
    if x.ndim != 5 or x.shape[2] != 2:
        raise ShapeError(f"{name}: expected shape (B, F, 2, H, W) or (B, 2, H, W), found {tuple(x.shape)}")
    return x


def loss_mask(gt: torch.Tensor, valid: torch.Tensor, max_flow: float = MAX_FLOW) -> torch.Tensor:
    """``valid & (||gt|| < max_flow)`` as bool ``(B, F, H, W)`` (``valid`` may be bool or float >= 0.5)."""
    gt = _as_flows(gt, "gt")
    if valid.ndim == 3:
        valid = valid[:, None]
    if tuple(valid.shape) != (gt.shape[0], gt.shape[1]) + tuple(gt.shape[-2:]):
        raise ShapeError(
            f"valid: expected shape {(gt.shape[0], gt.shape[1]) + tuple(gt.shape[-2:])} like gt, found {tuple(valid.shape)}"
        )
    valid = valid >= 0.5 if valid.dtype != torch.bool else valid
    mag = torch.sum(gt.float() ** 2, dim=2).sqrt()
    return valid & (mag < max_flow)


def flow_metric_sums(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> dict:
    """Sums over the masked pixels: ``{"epe": sum epe, "px1": count epe < 1, ..., "n": pixels}`` (floats)."""
    epe = torch.sum((_as_flows(pred, "pred").detach().float() - _as_flows(gt, "gt").float()) ** 2, dim=2).sqrt()
    e = epe[mask]
    out = {"epe": float(e.sum())}
    for name, thr in PX_THRESHOLDS.items():
        out[name] = float((e < thr).sum())
    out["n"] = float(e.numel())
    return out


def metrics_from_sums(sums: dict) -> dict:
    """``{"epe": mean, "px1": share, ...}`` from :func:`flow_metric_sums` (NaN without a valid pixel)."""
    n = sums.get("n", 0.0)
    return {k: (sums[k] / n if n > 0 else float("nan")) for k in METRIC_NAMES}


def sequence_loss(
    predictions: Sequence[torch.Tensor],
    gt: torch.Tensor,
    valid: torch.Tensor,
    gamma: float = GAMMA,
    max_flow: float = MAX_FLOW,
    flow_reduction: str = "mean",
) -> tuple[torch.Tensor, dict]:
    """Gamma-weighted L1 loss over the refinement iterations (see the module docstring).

    Args:
        predictions: one tensor per iteration (first to last), each ``(B, F, 2, H, W)`` (or
            ``(B, 2, H, W)`` for a single flow).
        gt: ``(B, F, 2, H, W)`` ground truth (any finite value where ``valid`` is False).
        valid: ``(B, F, H, W)`` bool (or float, valid >= 0.5).
        gamma: iteration weight base; iteration ``i`` of ``N`` has weight ``gamma^(N - i)``.
        max_flow: ground truth at least this long is excluded (400 px).
        flow_reduction: ``"mean"`` or ``"sum"`` over the F flows.

    Returns:
        ``(loss, sums)``: the scalar loss and :func:`flow_metric_sums` of the last iteration.
    """
    if flow_reduction not in FLOW_REDUCTIONS:
        raise ShapeError(f"flow_reduction: expected one of {FLOW_REDUCTIONS}, found {flow_reduction!r}")
    if len(predictions) == 0:
        raise ShapeError("predictions: expected at least one iteration, found an empty list")
    gt = _as_flows(gt, "gt")
    mask = loss_mask(gt, valid, max_flow)
    gt = torch.where(mask[:, :, None], gt, torch.zeros((), dtype=gt.dtype, device=gt.device))
    weight_mask = mask[:, :, None].to(gt.dtype)
    n = len(predictions)
    loss = gt.new_zeros(())
    for i, pred in enumerate(predictions):
        pred = _as_flows(pred, f"predictions[{i}]")
        if pred.shape != gt.shape:
            raise ShapeError(f"predictions[{i}]: expected shape {tuple(gt.shape)} like gt, found {tuple(pred.shape)}")
        i_loss = (pred.float() - gt).abs() * weight_mask
        term = i_loss.mean() if flow_reduction == "mean" else i_loss.mean(dim=(0, 2, 3, 4)).sum()
        loss = loss + gamma ** (n - i - 1) * term
    return loss, flow_metric_sums(predictions[-1], gt, mask)


class SequenceLoss(nn.Module):
    """:func:`sequence_loss` as a module (``gamma``, ``max_flow``, ``flow_reduction`` fixed at construction)."""

    def __init__(self, gamma: float = GAMMA, max_flow: float = MAX_FLOW, flow_reduction: str = "mean"):
        super().__init__()
        if flow_reduction not in FLOW_REDUCTIONS:
            raise ShapeError(f"flow_reduction: expected one of {FLOW_REDUCTIONS}, found {flow_reduction!r}")
        self.gamma, self.max_flow, self.flow_reduction = float(gamma), float(max_flow), flow_reduction

    def forward(self, predictions, gt, valid):
        return sequence_loss(predictions, gt, valid, self.gamma, self.max_flow, self.flow_reduction)
