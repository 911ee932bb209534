"""motionflow.geometry: numpy SE(3) against closed forms (a yaw rotation by hand, inverse round trip)."""

import numpy as np
import pytest

from motionflow.errors import ShapeError
from motionflow.geometry import apply_transform, compose_transforms, ego_flow, invert_transform


def _yaw(theta, t):
    c, s = np.cos(theta), np.sin(theta)
    T = np.eye(4)
    T[:2, :2] = [[c, -s], [s, c]]
    T[:3, 3] = t
    return T


def test_apply_yaw_by_hand():
    T = _yaw(np.pi / 2, (1.0, 2.0, 3.0))
    p = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], dtype=np.float32)
    out = apply_transform(p, T)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[1.0, 3.0, 3.0], [0.0, 2.0, 4.0]], atol=1e-6)
    np.testing.assert_allclose(ego_flow(p, T), out - p, atol=1e-6)


def test_invert_and_compose_round_trip():
    rng = np.random.default_rng(0)
    A, B = _yaw(0.3, rng.normal(size=3)), _yaw(-1.1, rng.normal(size=3))
    np.testing.assert_allclose(compose_transforms(A, invert_transform(A)), np.eye(4), atol=1e-12)
    p = rng.normal(size=(5, 3))
    np.testing.assert_allclose(apply_transform(p, compose_transforms(A, B)), apply_transform(apply_transform(p, B), A), atol=1e-12)
    with pytest.raises(ShapeError, match=r"T: expected a \(4, 4\)"):
        apply_transform(p, np.eye(3))
    with pytest.raises(ShapeError, match=r"points: expected \(N, 3\)"):
        ego_flow(np.zeros((4, 2)), A)
