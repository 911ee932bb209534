"""Sequence loss and per-step metrics against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from motionflow.errors import ShapeError
from motionflow.train.loss import MAX_FLOW, SequenceLoss, flow_metric_sums, metrics_from_sums, sequence_loss


def _gt():
    # (B=1, F=1, 2, H=1, W=2): two pixels, gt (1, 0) and (0, 2)
    return torch.tensor([[[[[1.0, 0.0]], [[0.0, 2.0]]]]])


def test_sequence_loss_hand_computed():
    gt = _gt()
    valid = torch.ones(1, 1, 1, 2, dtype=torch.bool)
    p0 = torch.zeros_like(gt)  # |diff| = 1, 0, 0, 2 -> mean 0.75
    p1 = gt.clone()
    p1[0, 0, 0, 0, 0] += 0.5  # |diff| = 0.5, 0, 0, 0 -> mean 0.125
    loss, sums = sequence_loss([p0, p1], gt, valid, gamma=0.5)
    assert float(loss) == pytest.approx(0.5 * 0.75 + 0.125)
    # metrics of the last iteration: epe 0.5 and 0 -> mean 0.25, all below 1 px
    m = metrics_from_sums(sums)
    assert m["epe"] == pytest.approx(0.25)
    assert m["px1"] == 1.0 and m["px3"] == 1.0 and m["px5"] == 1.0
    assert sums["n"] == 2


def test_invalid_and_large_flow_count_zero_but_stay_in_the_mean():
    gt = _gt()
    gt[0, 0, 0, 0, 1] = MAX_FLOW  # second pixel: |gt| = sqrt(400^2 + 2^2) >= max_flow -> excluded
    valid = torch.ones(1, 1, 1, 2, dtype=torch.bool)
    pred = torch.zeros_like(gt)
    loss, sums = sequence_loss([pred], gt, valid)
    # only the first pixel counts: |diff| = 1 on u, divided by all 4 elements (official .mean())
    assert float(loss) == pytest.approx(1.0 / 4)
    assert sums["n"] == 1
    valid[0, 0, 0, 0] = False
    loss, sums = sequence_loss([pred], gt, valid)
    assert float(loss) == 0.0 and sums["n"] == 0
    assert all(v != v for v in metrics_from_sums(sums).values())  # NaN without valid pixels


def test_nan_ground_truth_outside_the_mask_does_not_poison_the_loss():
    gt = _gt()
    gt[0, 0, :, 0, 1] = float("nan")
    valid = torch.tensor([[[[True, False]]]])
    loss, _ = sequence_loss([torch.zeros_like(gt)], gt, valid)
    assert float(loss) == pytest.approx(1.0 / 4)


def test_px_thresholds_are_strict():
    gt = torch.zeros(1, 1, 2, 1, 4)
    pred = torch.zeros_like(gt)
    pred[0, 0, 0, 0] = torch.tensor([0.5, 1.0, 3.0, 5.0])  # epe 0.5, 1, 3, 5
    sums = flow_metric_sums(pred, gt, torch.ones(1, 1, 1, 4, dtype=torch.bool))
    m = metrics_from_sums(sums)
    assert m["epe"] == pytest.approx(9.5 / 4)
    assert (m["px1"], m["px3"], m["px5"]) == (0.25, 0.5, 0.75)


def test_flow_reduction_sum_is_flows_times_mean():
    torch.manual_seed(1)
    gt = torch.randn(2, 3, 2, 4, 5)
    valid = torch.rand(2, 3, 4, 5) > 0.3
    preds = [torch.randn_like(gt) for _ in range(3)]
    mean, _ = sequence_loss(preds, gt, valid, gamma=0.8, flow_reduction="mean")
    total, _ = sequence_loss(preds, gt, valid, gamma=0.8, flow_reduction="sum")
    assert float(total) == pytest.approx(3 * float(mean), rel=1e-6)
    module = SequenceLoss(gamma=0.8, flow_reduction="sum")
    assert float(module(preds, gt, valid)[0]) == pytest.approx(float(total))


def test_multi_flow_loss_hand_computed():
    """Two flows of two pixels, gt 0, three iterations predicting 1, 2 and 4 everywhere; pixel 2 of
    flow 2 is invalid. Each iteration's term is sum(valid * |pred|) over all 8 elements / 8 = 0.75 c
    (RAFT's ``.mean()``, invalid elements count in the denominator), weighted 0.8^2, 0.8, 1."""
    gt = torch.zeros(1, 2, 2, 1, 2)
    valid = torch.tensor([[[[True, True]], [[True, False]]]])
    preds = [torch.full_like(gt, c) for c in (1.0, 2.0, 4.0)]
    loss, sums = sequence_loss(preds, gt, valid, gamma=0.8)
    assert float(loss) == pytest.approx(0.64 * 0.75 + 0.8 * 1.5 + 3.0)  # 4.68
    # "sum" adds the per-flow means: flow 1 gives c, flow 2 gives c / 2
    total, _ = sequence_loss(preds, gt, valid, gamma=0.8, flow_reduction="sum")
    assert float(total) == pytest.approx(0.64 * 1.5 + 0.8 * 3.0 + 6.0)  # 9.36
    # metrics of the last iteration on the 3 valid pixels: epe |(4, 4)| = 4 sqrt(2) each
    assert sums["n"] == 3 and metrics_from_sums(sums)["epe"] == pytest.approx(4 * 2**0.5)


def test_loss_gradient_reaches_every_iteration():
    gt = torch.ones(1, 1, 2, 2, 2)
    preds = [torch.zeros(1, 1, 2, 2, 2, requires_grad=True) for _ in range(2)]
    loss, _ = sequence_loss(preds, gt, torch.ones(1, 1, 2, 2, dtype=torch.bool), gamma=0.5)
    loss.backward()
    # d/dp of w * mean(|p - gt|) = -w / numel at every element
    assert torch.allclose(preds[0].grad, torch.full_like(gt, -0.5 / 8))
    assert torch.allclose(preds[1].grad, torch.full_like(gt, -1.0 / 8))


def test_bad_shapes_raise_clear_errors():
    gt = torch.zeros(1, 1, 2, 4, 4)
    valid = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    with pytest.raises(ShapeError, match=r"predictions\[0\].*\(1, 1, 2, 4, 4\).*\(1, 1, 2, 4, 5\)"):
        sequence_loss([torch.zeros(1, 1, 2, 4, 5)], gt, valid)
    with pytest.raises(ShapeError, match="valid: expected shape"):
        sequence_loss([gt], gt, torch.ones(1, 1, 4, 5, dtype=torch.bool))
    with pytest.raises(ShapeError, match="flow_reduction"):
        sequence_loss([gt], gt, valid, flow_reduction="max")
    with pytest.raises(ShapeError, match="at least one iteration"):
        sequence_loss([], gt, valid)
