import numpy as np
import pytest
import torch

from motionflow.errors import ShapeError
from motionflow.ops.transport import sinkhorn


def _scoop_reference(C, eps, gamma, iters, support):
    """SCOOP tools/ot.py scaling iterations, in numpy (multiplicative form)."""
    K = np.exp(-C / eps) * support
    n, m = C.shape
    p, q = np.full((n, 1), 1 / n), np.full((m, 1), 1 / m)
    power = gamma / (gamma + eps)
    a = np.full((n, 1), 1 / n)
    for _ in range(iters):
        b = (q / (K.T @ a + 1e-8)) ** power
        a = (p / (K @ b + 1e-8)) ** power
    return a * K * b.T


@pytest.mark.parametrize("iters", [1, 5])
def test_unbalanced_matches_scoop_form(iters):
    rng = np.random.default_rng(0)
    C = rng.uniform(0, 2, (30, 20))
    support = rng.uniform(size=C.shape) > 0.2
    want = _scoop_reference(C, 0.1, 1.0, iters, support)
    got = sinkhorn(torch.tensor(C), 0.1, iters, unbalanced=1.0, support=torch.tensor(support))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-12)


def test_balanced_marginals_and_small_eps():
    rng = np.random.default_rng(1)
    C = torch.tensor(rng.uniform(0, 1, (2, 12, 9)))
    T = sinkhorn(C, 0.05, 500)
    np.testing.assert_allclose(T.sum(-1).numpy(), 1 / 12, rtol=1e-6)
    np.testing.assert_allclose(T.sum(-2).numpy(), 1 / 9, rtol=1e-6)
    # eps so small the plain kernel underflows: still finite, and a permutation cost picks the permutation
    perm = torch.randperm(6)
    C2 = torch.ones(6, 6, dtype=torch.float64)
    C2[torch.arange(6), perm] = 0.0
    T2 = sinkhorn(C2, 1e-3, 20)
    assert torch.isfinite(T2).all()
    assert torch.equal(T2.argmax(1), perm)
    assert torch.equal(sinkhorn(C2, 1.0, 0), torch.exp(-C2))


def test_sinkhorn_errors():
    with pytest.raises(ShapeError, match="eps: expected > 0"):
        sinkhorn(torch.zeros(3, 3), 0.0, 1)
    with pytest.raises(ShapeError, match="support: expected shape"):
        sinkhorn(torch.zeros(3, 3), 0.1, 1, support=torch.ones(2, 3, dtype=torch.bool))
