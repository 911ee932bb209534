import math

import pytest
import torch

from motionflow.errors import ShapeError
from motionflow.sceneflow import StopCriteria
from motionflow.sceneflow.stopping import EarlyStopping, optimize


def test_early_stopping_rule_hand_sequence():
    es = EarlyStopping(patience=2, min_delta=0.1)
    # first value sets best; 0.95 is not better by > 0.1; 0.85 is; then two non-improvements stop
    assert [es.step(v) for v in [1.0, 0.95, 0.85, 0.80, 0.84]] == [False, False, False, False, True]
    assert es.best == 0.85
    assert EarlyStopping(5, 0.0).step(float("nan")) is True


def _scripted(losses):
    """A 'loss' that returns a scripted value sequence but still depends on a parameter (x)."""
    x = torch.zeros(1, requires_grad=True)
    it = {"i": 0}

    def loss_fn():
        v = losses[min(it["i"], len(losses) - 1)]
        it["i"] += 1
        return x.sum() * 0 + v + x.detach().sum() * 0

    return x, loss_fn


@pytest.mark.parametrize("check_every, noticed", [(1, 6), (3, 8), (7, 6)])
def test_stop_iteration_independent_of_check_every(check_every, noticed):
    losses = [5.0, 4.0, 3.0, 3.0, 3.0, 3.0, 2.9999, 3.0, 3.0] + [3.0] * 20
    x, fn = _scripted(losses)
    opt = torch.optim.SGD([x], lr=0.1)
    log = optimize(fn, [x], opt, StopCriteria(max_iters=100, min_delta=1e-3, patience=4, check_every=check_every))
    assert log.converged and log.stopped_by == "early_stopping"
    # best 3.0 at iteration 2; iterations 3, 4, 5, 6 do not improve by > 1e-3 -> stop at 6 (NSFP's rule)
    assert log.stop_iteration == 6
    assert log.loss_trace == pytest.approx(losses[:7])
    assert log.best_iteration == 6  # 2.9999 <= best is still recorded as the best iterate (loss <= best)
    # the losses reach the host after iterations check_every-1, 2*check_every-1, ...: the stop at 6 is
    # noticed at the first of those >= 6 (3: after 8), and that iteration's step is skipped
    assert log.iterations == noticed


def test_best_iterate_is_returned_not_last():
    # gradient descent with too large a step oscillates and diverges: the best iterate is the start
    x = torch.tensor([1.0], requires_grad=True)
    opt = torch.optim.SGD([x], lr=1.5)
    log = optimize(lambda: (x ** 2).sum(), [x], opt, StopCriteria(max_iters=10, patience=0, check_every=4))
    assert not log.converged and log.iterations == 10 and log.stopped_by == "max_iters"
    assert log.best_iteration == 0 and log.best_loss == 1.0
    assert float(x) == 1.0
    assert len(log.loss_trace) == 10 and log.loss_trace[-1] == pytest.approx(4.0 ** 9)


def test_converging_quadratic_and_nan():
    x = torch.tensor([3.0, -2.0], requires_grad=True)
    opt = torch.optim.SGD([x], lr=0.25)
    log = optimize(lambda: (x ** 2).sum(), [x], opt, StopCriteria(max_iters=1000, min_delta=1e-6, patience=5))
    # by hand: each step halves x, so loss_k = 13 / 4^k (exact in float32) and loss_k - loss_(k+1) =
    # 9.75 / 4^k > 1e-6 for k <= 11: iterations 1..12 improve; then loss_12 = 7.7e-7 < min_delta, so
    # nothing beats it by 1e-6: 13, 14, 15, 16, 17 are the 5 bad iterations -> stop at 17, whose
    # parameters (loss <= best) are the best iterate
    assert log.converged and log.stop_iteration == 17 and log.iterations == 17 and log.best_iteration == 17
    assert x.tolist() == [3.0 * 0.5**17, -2.0 * 0.5**17]
    y = torch.tensor([1.0], requires_grad=True)
    vals = iter([1.0, 0.5, float("nan")] + [0.1] * 10)
    log = optimize(lambda: y.sum() * 0 + next(vals), [y], torch.optim.SGD([y], lr=0.1), StopCriteria(max_iters=10))
    assert log.stopped_by == "nan" and not log.converged and log.stop_iteration == 2


def test_time_budget_and_criteria_errors():
    x = torch.tensor([1.0], requires_grad=True)
    opt = torch.optim.SGD([x], lr=0.1)  # x <- 0.8 x per step
    steps = []
    opt.register_step_post_hook(lambda *a: steps.append(float(x)))
    log = optimize(lambda: (x ** 2).sum(), [x], opt,
                   StopCriteria(max_iters=10 ** 6, patience=0, check_every=5, time_budget_s=0.0))
    # a zero budget is seen at the first check, after the 5th loss (iteration 4), before its step:
    # 4 optimiser steps, 5 losses, and the best iterate is iteration 4's x = 0.8^4
    assert log.stopped_by == "time_budget" and log.iterations == 4 and not log.converged
    assert len(steps) == 4 and len(log.loss_trace) == 5 and float(x) == pytest.approx(0.8**4, rel=1e-6)
    with pytest.raises(ShapeError, match="check_every: expected >= 1, found 0"):
        StopCriteria(check_every=0)
    with pytest.raises(ShapeError, match="stop: expected a StopCriteria or dict"):
        StopCriteria.coerce(5)
    assert StopCriteria.coerce({"patience": 3}, max_iters=7) == StopCriteria(max_iters=7, patience=3)
