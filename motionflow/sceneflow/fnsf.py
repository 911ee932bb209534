"""Fast Neural Scene Flow (Li, Lucey, Pontes, ICCV 2023): one MLP and a distance-transform loss.

As coded in ``Lilac-Lee/FastNSF`` (``optimization.py``):

* the distance field of pc2 is built **once per pair** on a voxel grid (0.1 m cells, ``grid_factor=10``)
  over the joint bounding box of pc1 and pc2 plus one cell
  (:class:`motionflow.ops.distance.DistanceTransform`);
* one :class:`~motionflow.sceneflow.nsfp.NeuralPrior` (8 x 128 ReLU) with xavier-uniform weights and zero
  biases (``--init_weight``), **no backward net**;
* loss = mean of the field (metres, unsquared, untruncated) trilinearly sampled at ``pc1 + f(pc1)``;
* Adam (lr 0.008 for full clouds; the README uses 0.01 at 8192 points), early stopping with
  ``min_delta=0.001`` and patience 10 (full) or 5 (8192 points), up to 5000 iterations, best-loss iterate.

Deviations: the field is the exact EDT (FNSF: FastGeodis' raster-scan approximation); queries outside
the grid add the distance to the grid box (FNSF clamps); the field is built on **all** pc2 points even
when ``max_points`` subsamples the fit; grids above ``max_cells`` are refused with a clear error (crop
the clouds first, see :mod:`motionflow.sceneflow.preprocess`; the CLI crops to :data:`DEFAULT_RANGE` unless
told otherwise).
"""

from __future__ import annotations

import torch

import numpy as np

from ..ops.distance import DEFAULT_MAX_CELLS, DistanceTransform, grid_shape, joint_bounds
from .base import EstimateOutput, SceneFlowMethod
from .nsfp import NeuralFlowField, NeuralPrior
from .stopping import OptimizationLog, StopCriteria, optimize

#: ``(xmin, ymin, zmin, xmax, ymax, zmax)`` metres: the range ``motionflow sceneflow --method fnsf`` crops
#: to when no ``--crop``/``--radius`` is given and the grid over the whole clouds would be too big
#: (OpenSceneFlow's ``point_cloud_range`` for AV2/Waymo, ego frame). A full sweep reaches 200 m, whose
#: 0.1 m grid would need billions of cells; this box needs at most 1026 x 1026 x 62 = 65 M cells.
DEFAULT_RANGE = (-51.2, -51.2, -3.0, 51.2, 51.2, 3.0)
#: distance-field cell in metres (FNSF ``grid_factor=10``)
VOXEL_SIZE = 0.1


def grid_fits(pc1, pc2, voxel_size: float = VOXEL_SIZE, max_cells: int = DEFAULT_MAX_CELLS) -> bool:
    """Whether FNSF's distance grid over the finite points of ``pc1`` and ``pc2`` (numpy ``(N, 3)``) stays
    within ``max_cells`` (the check :class:`~motionflow.ops.distance.DistanceTransform` makes, done
    before any work)."""
    bounds = joint_bounds(pc1, pc2)
    return bounds is None or int(np.prod(grid_shape(*bounds, voxel_size), dtype=np.int64)) <= max_cells


class FastNSF(SceneFlowMethod):
    """Fast Neural Scene Flow (registered as ``fnsf``).

    Args:
        stop: :class:`StopCriteria` or dict (default: 5000 iterations, min_delta 0.001, patience 10,
            losses copied to the host every 10 iterations; see :class:`~motionflow.sceneflow.nsfp.NSFP`).
        lr: Adam learning rate (0.008).
        voxel_size: distance-field cell in metres (0.1).
        depth, width, activation, init: the MLP (8, 128, relu, xavier).
        max_cells: refuse distance grids above this many cells.
        **base: :class:`~motionflow.sceneflow.base.SceneFlowMethod` options.
    """

    name = "fnsf"

    def __init__(self, stop=None, lr: float = 0.008, voxel_size: float = VOXEL_SIZE, depth: int = 8, width: int = 128,
                 activation: str = "relu", init: str = "xavier", max_cells: int = DEFAULT_MAX_CELLS,
                 weight_decay: float = 0.0, **base):
        super().__init__(**base)
        self.stop = StopCriteria.coerce(stop, max_iters=5000, min_delta=1e-3, patience=10, check_every=10)
        self.lr = lr
        self.voxel_size = voxel_size
        self.net_options = dict(depth=depth, width=width, activation=activation, init=init)
        self.max_cells = max_cells
        self.weight_decay = weight_decay
        self._pc2_full = None

    def fit(self, pc1: torch.Tensor, pc2: torch.Tensor, field_points=None) -> tuple[NeuralFlowField, OptimizationLog]:
        """Fit on ``pc1 -> pc2``; the distance field is built on ``field_points`` (default ``pc2``)."""
        target = pc2 if field_points is None else field_points
        dt = DistanceTransform.for_pair(pc1, target, voxel_size=self.voxel_size, max_cells=self.max_cells).to(pc1.device)
        net = NeuralPrior(**self.net_options).to(pc1.device)
        optimizer = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)

        def loss_fn():
            return dt(pc1 + net(pc1)).mean()

        log = optimize(loss_fn, list(net.parameters()), optimizer, self.stop, progress=self.progress, desc=self.name)
        log.grid_shape = dt.shape
        return NeuralFlowField(net), log

    def __call__(self, pc1, pc2, ego_motion=None):
        # keep the full pc2 for the distance field (the base class hands _estimate a subsample)
        from ..ops.neighbors import as_points

        self._pc2_full = as_points(pc2, "pc2").detach().to(self.device, torch.float32)
        try:
            return super().__call__(pc1, pc2, ego_motion=ego_motion)
        finally:
            self._pc2_full = None

    def _estimate(self, pc1, pc2, query):
        field, log = self.fit(pc1, pc2, field_points=self._pc2_full)
        return EstimateOutput(flow=field(query), iterations=log.iterations, loss_trace=log.loss_trace,
                              converged=log.converged,
                              extras={"best_loss": log.best_loss, "best_iteration": log.best_iteration,
                                      "stopped_by": log.stopped_by, "grid_shape": log.grid_shape,
                                      "field": field})
