"""Stopping rules and the best-iterate bookkeeping shared by every runtime-optimisation method.

NSFP (``utils.EarlyStopping``, ``optimization.py: solver``) does, at every iteration and before the
optimiser step: compute the loss; if ``loss <= best_loss`` remember the current flow as the best; stop
when the loss has not improved by more than ``min_delta`` on the best seen for ``patience`` iterations
(or is NaN). The returned flow is the best-loss iterate, not the last one.

Here the same rule runs **without a host sync every iteration**: the best loss and the best parameters
are tracked on the device (``torch.where`` on a device boolean), and the losses are copied to the host
in one transfer every ``check_every`` iterations, where the early-stopping rule replays them one by one.
The stopping decision is therefore identical to NSFP's (same iteration), only *noticed* up to
``check_every - 1`` iterations later; those extra iterations still compete for the best iterate.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, List, Optional

import torch

from ..errors import ShapeError


@dataclass
class StopCriteria:
    """When an optimisation stops.

    Attributes:
        max_iters: hard cap on optimiser steps (NSFP: 5000).
        min_delta: an iteration "improves" when ``loss < best - min_delta`` (NSFP: 1e-4).
        patience: stop after this many iterations without improvement (NSFP: 100; 0 disables early
            stopping).
        check_every: copy the losses to the host (and decide) every this many iterations.
        time_budget_s: stop (not converged) once this many seconds have passed, checked with the losses.
    """

    max_iters: int = 5000
    min_delta: float = 1e-4
    patience: int = 100
    check_every: int = 1
    time_budget_s: Optional[float] = None

    def __post_init__(self) -> None:
        if self.max_iters < 0:
            raise ShapeError(f"StopCriteria max_iters: expected >= 0, found {self.max_iters}")
        if self.check_every < 1:
            raise ShapeError(f"StopCriteria check_every: expected >= 1, found {self.check_every}")
        if self.patience < 0 or self.min_delta < 0:
            raise ShapeError(
                f"StopCriteria patience/min_delta: expected >= 0, found {self.patience} / {self.min_delta}"
            )

    @classmethod
    def coerce(cls, value, **defaults) -> "StopCriteria":
        """A StopCriteria from None (defaults), a dict of fields, or a StopCriteria."""
        if value is None:
            return cls(**defaults)
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls(**{**defaults, **value})
        raise ShapeError(f"stop: expected a StopCriteria or dict, found {type(value).__name__}")


class EarlyStopping:
    """NSFP's ``EarlyStopping(mode="min", min_delta, patience)`` on host floats.

    ``step(loss)`` returns True when the run should stop: the loss is NaN, or ``patience`` consecutive
    steps failed to beat the best by more than ``min_delta``.
    """

    def __init__(self, patience: int, min_delta: float):
        self.patience = patience
        self.min_delta = min_delta
        self.best: Optional[float] = None
        self.bad_steps = 0

    def step(self, loss: float) -> bool:
        if math.isnan(loss):
            return True
        if self.best is None:
            self.best = loss
            return False
        if loss < self.best - self.min_delta:
            self.best = loss
            self.bad_steps = 0
        else:
            self.bad_steps += 1
        return self.patience > 0 and self.bad_steps >= self.patience


class BestIterate:
    """Device-side copy of the tensors at the lowest loss seen (NSFP: ``if loss <= best_loss``)."""

    def __init__(self, tensors: Iterable[torch.Tensor]):
        self.tensors = list(tensors)
        self.saved = [t.detach().clone() for t in self.tensors]
        dev = self.tensors[0].device if self.tensors else "cpu"
        self.loss = torch.tensor(float("inf"), device=dev)
        self.iteration = torch.tensor(-1, device=dev)

    @torch.no_grad()
    def update(self, loss: torch.Tensor, iteration: int) -> None:
        loss = loss.detach().to(self.loss.dtype)
        better = loss <= self.loss  # NaN never wins
        for s, t in zip(self.saved, self.tensors):
            s.copy_(torch.where(better, t.detach(), s))
        self.iteration = torch.where(better, torch.full_like(self.iteration, iteration), self.iteration)
        self.loss = torch.where(better, loss, self.loss)

    @torch.no_grad()
    def restore(self) -> None:
        """Write the best values back into the tracked tensors (e.g. an MLP's parameters)."""
        for s, t in zip(self.saved, self.tensors):
            t.copy_(s)


@dataclass
class OptimizationLog:
    """What :func:`optimize` reports."""

    iterations: int = 0
    loss_trace: List[float] = field(default_factory=list)
    converged: bool = False
    best_loss: float = float("inf")
    best_iteration: int = -1
    stopped_by: str = "max_iters"
    stop_iteration: int = -1


def optimize(
    loss_fn: Callable[[], torch.Tensor],
    params: List[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    stop: StopCriteria,
    progress: bool = False,
    desc: str = "optimize",
    keep: str = "best",
) -> OptimizationLog:
    """Minimise ``loss_fn()`` over ``params`` and leave the **best-loss iterate** in ``params``.

    Per iteration (NSFP order): ``loss = loss_fn()``; remember ``params`` if ``loss <= best``; check
    early stopping (deferred to every ``stop.check_every`` iterations); ``backward``; ``step``.
    ``keep="last"`` leaves the last iterate instead (SCOOP's refinement; ``best_loss`` is still reported).
    """
    if keep not in ("best", "last"):
        raise ShapeError(f"optimize keep: expected 'best' or 'last', found {keep!r}")
    log = OptimizationLog()
    if stop.max_iters == 0:
        return log
    stopper = EarlyStopping(stop.patience, stop.min_delta)
    best = BestIterate(params)
    pending: list = []
    start = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=stop.max_iters, desc=desc, leave=False)
    it = 0
    done = False
    for it in range(stop.max_iters):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn()
        best.update(loss, it)
        pending.append(loss.detach())
        last = it == stop.max_iters - 1
        if (it + 1) % stop.check_every == 0 or last:
            values = torch.stack(pending).float().cpu().tolist()  # the one host sync per check
            first = it + 1 - len(values)
            pending = []
            for j, v in enumerate(values):
                log.loss_trace.append(v)
                if stopper.step(v):
                    log.converged = not math.isnan(v)
                    log.stopped_by = "early_stopping" if log.converged else "nan"
                    log.stop_iteration = first + j  # NSFP breaks before the step of this iteration
                    done = True
                    break
            if bar is not None:
                bar.update(len(values))
                bar.set_postfix(loss=f"{values[-1]:.5f}")
            if not done and stop.time_budget_s is not None and time.perf_counter() - start > stop.time_budget_s:
                log.stopped_by = "time_budget"
                done = True
            if done:
                log.iterations = it  # optimiser steps actually taken (this iteration's step is skipped)
                break
        loss.backward()
        optimizer.step()
    if not done:
        log.iterations = it + 1
    if bar is not None:
        bar.close()
    if keep == "best":
        best.restore()
    log.best_loss = float(best.loss)
    log.best_iteration = int(best.iteration)
    return log
