import numpy as np
import pytest
import torch

from motionflow.errors import ShapeError
from motionflow.ops.smoothness import knn_graph, knn_smoothness


def test_smoothness_brute_force():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(60, 3))
    f = torch.tensor(rng.normal(size=(60, 3)))
    k = 5
    d = ((p[:, None] - p[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nb = np.argsort(d, 1)[:, :k]
    fn = f.numpy()
    want = np.abs(fn[:, None] - fn[nb]).sum(-1).mean()
    assert float(knn_smoothness(p, f, k=k)) == pytest.approx(want, rel=1e-12)
    g = knn_graph(p, k)
    assert (np.sort(g.numpy(), 1) == np.sort(nb, 1)).all()


def test_constant_flow_is_smooth_and_duplicates():
    p = np.array([[0.0, 0, 0], [0.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0]])
    g = knn_graph(p, 2)
    assert all(i not in row for i, row in enumerate(g.tolist()))
    assert float(knn_smoothness(p, torch.ones(4, 3), k=2)) == 0.0
    with pytest.raises(ShapeError, match="k=4 needs at least 5 points"):
        knn_graph(p, 4)
    with pytest.raises(ShapeError, match=r"flow: expected shape \(N, 3\)"):
        knn_smoothness(p, torch.ones(4, 2), k=2)
