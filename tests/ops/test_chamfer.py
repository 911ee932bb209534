import numpy as np
import pytest
import torch

from motionflow.errors import ShapeError
from motionflow.ops.chamfer import ChamferDistance, chamfer_distance


def _brute(a, b, truncate=None, squared=True):
    d = ((a[:, None] - b[None]) ** 2).sum(-1)
    if not squared:
        d = np.sqrt(d)
    dab, dba = d.min(1), d.min(0)
    if truncate is not None:
        dab = np.where(dab >= truncate, 0, dab)
        dba = np.where(dba >= truncate, 0, dba)
    return dab, dba


@pytest.mark.parametrize("truncate", [None, 2.0, 0.5])
@pytest.mark.parametrize("squared", [True, False])
def test_chamfer_vs_brute_force(truncate, squared):
    rng = np.random.default_rng(0)
    a = rng.uniform(-3, 3, (200, 3))
    b = rng.uniform(-3, 3, (150, 3))
    dab, dba = _brute(a, b, truncate, squared)
    got = chamfer_distance(a, b, truncate=truncate, squared=squared)
    np.testing.assert_allclose(float(got), dab.mean() + dba.mean(), rtol=1e-10)
    np.testing.assert_allclose(float(chamfer_distance(a, b, truncate=truncate, squared=squared, bidirectional=False)),
                               dab.mean(), rtol=1e-10)
    np.testing.assert_allclose(float(chamfer_distance(a, b, truncate=truncate, squared=squared, reduction="sum")),
                               dab.sum() + dba.sum(), rtol=1e-10)


def test_nsfp_truncation_hand_computed():
    # a: two points; b: one point. squared NN distances: a0->b 1.0, a1->b 9.0 (>= 2 -> 0), b->a 1.0
    a = np.array([[0.0, 0, 0], [4.0, 0, 0]])
    b = np.array([[1.0, 0, 0]])
    # NSFP: mean over ALL points including the zeroed one: (1 + 0) / 2 + 1 / 1 = 1.5
    assert float(chamfer_distance(a, b, truncate=2.0)) == pytest.approx(1.5)
    # boundary: exactly 2.0 is truncated too (>=)
    c = np.array([[1.0 + np.sqrt(2.0), 0, 0]])
    d_ab, d_ba = chamfer_distance(np.array([[1.0, 0, 0]]), c, truncate=2.0 - 1e-12, reduction="none")
    assert float(d_ab[0]) == 0.0 and float(d_ba[0]) == 0.0
    assert float(chamfer_distance(a, b)) == pytest.approx((1 + 9) / 2 + 1)


def test_weights_and_backward_weight():
    a = np.array([[0.0, 0, 0], [2.0, 0, 0]])
    b = np.array([[1.0, 0, 0], [2.5, 0, 0]])
    # a->b squared: 1, 0.25; b->a: 1, 0.25
    got = chamfer_distance(a, b, weights=torch.tensor([0.5, 2.0], dtype=torch.float64), backward_weight=0.5)
    assert float(got) == pytest.approx((0.5 + 0.5) / 2 + 0.5 * (1.25 / 2))
    m = ChamferDistance(truncate=0.5, backward_weight=0.0)
    assert float(m(a, b)) == pytest.approx(0.25 / 2)


def test_chamfer_gradcheck():
    rng = np.random.default_rng(3)
    a = torch.tensor(rng.normal(size=(15, 3)), requires_grad=True)
    b = torch.tensor(rng.normal(size=(12, 3)), requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: chamfer_distance(x, y, truncate=2.0), (a, b))
    assert torch.autograd.gradcheck(lambda x, y: chamfer_distance(x, y, squared=False), (a, b))


def test_chamfer_errors():
    with pytest.raises(ShapeError, match="both clouds need points"):
        chamfer_distance(np.zeros((0, 3)), np.zeros((3, 3)))
    with pytest.raises(ShapeError, match=r"weights: expected shape \(2,\)"):
        chamfer_distance(np.zeros((2, 3)), np.ones((3, 3)), weights=torch.ones(3))
    with pytest.raises(ValueError, match="reduction"):
        chamfer_distance(np.zeros((2, 3)), np.ones((3, 3)), reduction="max")


@pytest.mark.parametrize("backend", ["scipy", "torch"])
def test_unchecked_nan_gives_a_nan_loss_not_an_error(backend):
    # optimisation loops skip the finite check (a host sync on CUDA): a diverged point must poison
    # the loss (the optimiser then stops on NaN), not raise or index out of range
    rng = np.random.default_rng(1)
    a = torch.tensor(rng.normal(size=(20, 3)), dtype=torch.float32)
    b = torch.tensor(rng.normal(size=(15, 3)), dtype=torch.float32)
    a[3] = float("nan")
    loss = chamfer_distance(a, b, truncate=2.0, backend=backend, check_finite=False)
    assert torch.isnan(loss)
    with pytest.raises(ShapeError, match="a: expected finite coordinates, found 1 point"):
        chamfer_distance(a, b, backend=backend)
    # the finite rows are untouched by the NaN row: per-point a -> b distances equal brute force
    d_ab, _ = chamfer_distance(a, b, backend=backend, reduction="none", check_finite=False)
    ok = torch.ones(20, dtype=torch.bool)
    ok[3] = False
    brute = torch.cdist(a[ok], b).min(1).values ** 2
    torch.testing.assert_close(d_ab[ok], brute)
