"""Neural Scene Flow Prior (Li, Lucey, Pontes, NeurIPS 2021), as published and coded.

Per pair of clouds, from scratch (``Lilac-Lee/Neural_Scene_Flow_Prior``, ``optimization.py: solver``):

* forward MLP ``g`` and backward MLP ``h`` (:class:`NeuralPrior`: 8 layers ``Linear + ReLU`` of width
  128 then ``Linear(128, 3)``, raw xyz in, flow out); ``h`` starts as a copy of ``g`` (``deepcopy``);
* ``pc1' = pc1 + g(pc1)``, ``pc1'' = pc1' - h(pc1')``;
* loss ``= Chamfer(pc1', pc2) + Chamfer(pc1'', pc1)``, squared NN distances, values ``>= 2 m^2`` set to
  0, mean over all points, both directions summed (:func:`motionflow.ops.chamfer.chamfer_distance`);
* Adam, lr 0.008, weight decay 1e-4 on both nets (the param-group setting in the code), up to 5000
  iterations, early stopping on the loss (``min_delta=1e-4``, patience 100), and the **best-loss
  iterate** is returned (:mod:`motionflow.sceneflow.stopping`).

Deviations, all deliberate:

* a **fresh initialisation for every pair** (the reference builds the net once and warm-starts every
  sample from the previous one; OpenSceneFlow and FNSF re-initialise too);
* the best loss starts at +inf (the reference starts at 10, so a loss above 10 never records a flow);
* the kNN is a CPU KD-tree with torch distances instead of pytorch3d ``knn_points`` (same values);
* the fitted network is kept: :meth:`NSFP.fit` returns a :class:`NeuralFlowField` that evaluates the flow
  at any points, which is how ``max_points`` fits on a subsample and predicts for every point.
"""

from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import nn

from ..errors import ShapeError, UnknownNameError
from ..ops.chamfer import chamfer_distance
from .base import EstimateOutput, SceneFlowMethod
from .stopping import OptimizationLog, StopCriteria, optimize

ACTIVATIONS = {"relu": torch.relu, "sigmoid": torch.sigmoid}


class NeuralPrior(nn.Module):
    """NSFP's coordinate MLP: ``depth`` x (``Linear`` + activation), then ``Linear(width, 3)``.

    Parameter names follow the reference (``layer1`` ... ``layer{depth+1}``), so a reference state dict
    loads with ``strict=True`` for the default ``depth=8, width=128``.

    Args:
        depth: number of activated layers (NSFP: 8; the first maps 3 -> width).
        width: hidden units (NSFP: 128).
        activation: ``"relu"`` (NSFP default) or ``"sigmoid"``.
        init: ``"default"`` (PyTorch's Linear init, as NSFP) or ``"xavier"`` (xavier-uniform weights and
            zero biases, FNSF's ``--init_weight``).
    """

    def __init__(self, depth: int = 8, width: int = 128, activation: str = "relu", init: str = "default"):
        super().__init__()
        if depth < 1 or width < 1:
            raise ShapeError(f"NeuralPrior: expected depth >= 1 and width >= 1, found {depth}, {width}")
        if activation not in ACTIVATIONS:
            raise UnknownNameError(f"NeuralPrior activation: expected one of {sorted(ACTIVATIONS)}, found {activation!r}")
        if init not in ("default", "xavier"):
            raise UnknownNameError(f"NeuralPrior init: expected 'default' or 'xavier', found {init!r}")
        self.depth = depth
        self.act = ACTIVATIONS[activation]
        for i in range(depth):
            self.add_module(f"layer{i + 1}", nn.Linear(3 if i == 0 else width, width))
        self.add_module(f"layer{depth + 1}", nn.Linear(width, 3))
        if init == "xavier":
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., 3)`` points -> ``(..., 3)`` flow."""
        for i in range(1, self.depth + 1):
            x = self.act(getattr(self, f"layer{i}")(x))
        return getattr(self, f"layer{self.depth + 1}")(x)


class NeuralFlowField:
    """A fitted flow field: ``field(points (N, 3)) -> flow (N, 3)``, evaluated in chunks without gradients."""

    def __init__(self, net: nn.Module, chunk_size: int = 65536):
        self.net = net
        self.chunk_size = chunk_size

    @torch.no_grad()
    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        p = torch.as_tensor(points, dtype=torch.float32, device=next(self.net.parameters()).device)
        if p.ndim != 2 or p.shape[1] != 3:
            raise ShapeError(f"NeuralFlowField points: expected shape (N, 3), found {tuple(p.shape)}")
        return torch.cat([self.net(p[i:i + self.chunk_size]) for i in range(0, p.shape[0], self.chunk_size)]) \
            if p.shape[0] else torch.zeros_like(p)


class NSFP(SceneFlowMethod):
    """Neural Scene Flow Prior (registered as ``nsfp``). See the module docstring.

    Args:
        stop: :class:`StopCriteria` or dict (default: 5000 iterations, min_delta 1e-4, patience 100;
            losses copied to the host every 10 iterations: the stopping iteration is NSFP's, noticed up to
            9 iterations later; ``check_every=1`` replays the reference loop exactly).
        lr: Adam learning rate (0.008).
        weight_decay: Adam (L2) weight decay on both nets (1e-4).
        depth, width, activation, init: the MLP (:class:`NeuralPrior`; NSFP: 8, 128, relu, default).
        truncate: squared-distance truncation of the Chamfer (2.0 m^2); None disables it.
        backward_flow: use the backward (cycle) net (always on in the reference).
        knn_backend: backend of the Chamfer kNN.
        **base: :class:`~motionflow.sceneflow.base.SceneFlowMethod` options (``max_points``,
            ``compensate_ego``, ``seed``, ``device``, ``progress``...).
    """

    name = "nsfp"

    def __init__(self, stop=None, lr: float = 0.008, weight_decay: float = 1e-4, depth: int = 8, width: int = 128,
                 activation: str = "relu", init: str = "default", truncate: Optional[float] = 2.0,
                 backward_flow: bool = True, knn_backend: str = "auto", **base):
        super().__init__(**base)
        self.stop = StopCriteria.coerce(stop, max_iters=5000, min_delta=1e-4, patience=100, check_every=10)
        self.lr = lr
        self.weight_decay = weight_decay
        self.net_options = dict(depth=depth, width=width, activation=activation, init=init)
        self.truncate = truncate
        self.backward_flow = backward_flow
        self.knn_backend = knn_backend

    def fit(self, pc1: torch.Tensor, pc2: torch.Tensor) -> tuple[NeuralFlowField, OptimizationLog]:
        """Fit the prior on ``pc1 -> pc2`` (tensors on ``self.device``); returns the best-loss field."""
        net = NeuralPrior(**self.net_options).to(pc1.device)
        groups = [{"params": list(net.parameters()), "lr": self.lr, "weight_decay": self.weight_decay}]
        net_inv = None
        if self.backward_flow:
            net_inv = copy.deepcopy(net)
            groups.append({"params": list(net_inv.parameters()), "lr": self.lr, "weight_decay": self.weight_decay})
        optimizer = torch.optim.Adam(groups, lr=self.lr)
        params = [p for g in groups for p in g["params"]]

        def loss_fn():
            deformed = pc1 + net(pc1)
            loss = chamfer_distance(deformed, pc2, truncate=self.truncate, backend=self.knn_backend,
                                    check_finite=False)
            if net_inv is not None:
                back = deformed - net_inv(deformed)
                loss = loss + chamfer_distance(back, pc1, truncate=self.truncate, backend=self.knn_backend,
                                               check_finite=False)
            return loss

        log = optimize(loss_fn, params, optimizer, self.stop, progress=self.progress, desc=self.name)
        return NeuralFlowField(net), log

    def _estimate(self, pc1, pc2, query):
        field, log = self.fit(pc1, pc2)
        return EstimateOutput(flow=field(query), iterations=log.iterations, loss_trace=log.loss_trace,
                              converged=log.converged,
                              extras={"best_loss": log.best_loss, "best_iteration": log.best_iteration,
                                      "stopped_by": log.stopped_by, "field": field})
