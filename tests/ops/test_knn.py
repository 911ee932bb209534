import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from motionflow.errors import ShapeError, UnknownNameError
from motionflow.ops.neighbors import knn, knn_indices


def _clouds(seed=0, n=300, m=400):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)).astype(np.float64), rng.normal(size=(m, 3)).astype(np.float64)


@pytest.mark.parametrize("backend", ["scipy", "open3d", "torch", "auto"])
@pytest.mark.parametrize("k", [1, 5])
def test_knn_matches_ckdtree(backend, k):
    q, r = _clouds()
    d_ref, i_ref = cKDTree(r).query(q, k=k)
    d, i = knn(q, r, k=k, backend=backend)
    d, i = d.numpy().reshape(len(q), k), i.numpy()
    assert i.dtype == np.int64
    np.testing.assert_allclose(d, np.asarray(d_ref).reshape(len(q), k), rtol=1e-5, atol=1e-6)
    # random float clouds have no ties: same index sets
    assert (np.sort(i, 1) == np.sort(np.asarray(i_ref).reshape(len(q), k), 1)).all()


@pytest.mark.parametrize("backend", ["scipy", "open3d", "torch"])
def test_knn_ties_same_distances(backend):
    # integer lattice: many equidistant neighbours; distances must agree even if indices differ
    g = np.stack(np.meshgrid(*[np.arange(4.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    q = g + 0.5  # cell centres: 8 equidistant corners each
    d, i = knn(q, g, k=3, backend=backend, squared=True)
    np.testing.assert_allclose(d.numpy()[:8], 0.75, rtol=1e-6)
    # the returned indices really are at the returned distance
    np.testing.assert_allclose(((q[:, None] - g[i.numpy()]) ** 2).sum(-1), d.numpy(), rtol=1e-6)


def test_knn_squared_and_gradients_to_both_clouds():
    q = torch.tensor([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    r = torch.tensor([[1.0, 0.0, 0.0], [3.0, 1.5, 0.0], [10.0, 0, 0]], dtype=torch.float64, requires_grad=True)
    d2, idx = knn(q, r, k=1, squared=True)
    assert idx[:, 0].tolist() == [0, 1]
    assert d2[:, 0].tolist() == [1.0, 2.25]
    d2.sum().backward()
    # d/dq ||q - r||^2 = 2 (q - r)
    np.testing.assert_allclose(q.grad.numpy(), [[-2, 0, 0], [0, -3, 0]])
    np.testing.assert_allclose(r.grad.numpy(), [[2, 0, 0], [0, 3, 0], [0, 0, 0]])
    d, _ = knn(q.detach(), r.detach(), k=2)
    np.testing.assert_allclose(d.numpy(), [[1, np.sqrt(11.25)], [1.5, 2]])


def test_knn_gradcheck():
    q, r = _clouds(1, 20, 30)
    qt = torch.tensor(q, requires_grad=True)
    rt = torch.tensor(r, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: knn(a, b, k=3)[0], (qt, rt))


def test_knn_torch_chunks_match():
    q, r = _clouds(2, 100, 50)
    a = knn_indices(q, r, k=4, backend="torch", chunk_size=7)
    b = knn_indices(q, r, k=4, backend="scipy")
    assert torch.equal(a, b)


def test_knn_errors():
    q, r = _clouds()
    bad = q.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ShapeError, match=r"query: expected finite coordinates, found 1 point"):
        knn(bad, r)
    r2 = r.copy()
    r2[0, 0] = np.inf
    with pytest.raises(ShapeError, match=r"ref: expected finite"):
        knn(q, r2)
    with pytest.raises(ShapeError, match=r"query: expected shape \(N, 3\), found \(300, 2\)"):
        knn(q[:, :2], r)
    with pytest.raises(ShapeError, match=r"k=5 needs at least 5 reference points, found 2"):
        knn(q, r[:2], k=5)
    with pytest.raises(UnknownNameError, match="kdtree"):
        knn(q, r, backend="kdtree")
    with pytest.raises(ShapeError, match="list"):
        knn([[0, 0, 0]], r)
