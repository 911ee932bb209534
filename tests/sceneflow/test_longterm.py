import numpy as np
import pytest
import torch

from motionflow.errors import ShapeError
from motionflow.sceneflow import accumulate, propagate
from motionflow.sceneflow.longterm import interpolate_flow


def test_interpolate_flow_idw_hand_computed():
    cloud = np.array([[0.0, 0, 0], [2.0, 0, 0]], np.float32)
    flow = np.array([[1.0, 0, 0], [3.0, 0, 0]], np.float32)
    # at x=0.5: distances 0.5 and 1.5 -> weights 2 and 2/3 -> (2*1 + 2/3*3) / (8/3) = 1.5
    out = interpolate_flow(np.array([[0.5, 0, 0], [100, 0, 0]], np.float32), cloud, flow, k=2, max_distance=10)
    assert out[0, 0] == pytest.approx(1.5)
    assert np.isnan(out[1]).all()


def test_propagate_chains_arrays_and_fields():
    rng = np.random.default_rng(0)
    clouds = [rng.uniform(-5, 5, (500, 3)).astype(np.float32) for _ in range(3)]
    # a constant velocity field: every step moves by v, whatever the sampling
    v = np.float32([0.1, -0.2, 0.05])
    flows = [np.broadcast_to(v, c.shape).copy() for c in clouds]
    p = rng.uniform(-3, 3, (20, 3)).astype(np.float32)
    track = propagate(p, flows, clouds)
    assert len(track) == 4
    np.testing.assert_allclose(track[3], p + 3 * v, atol=1e-5)
    # a callable field (e.g. a fitted NSFP network) is evaluated at the current positions
    rot = lambda q: torch.stack([-q[:, 1], q[:, 0], torch.zeros_like(q[:, 0])], 1) * 0.1  # noqa: E731
    t2 = propagate(p, [rot, rot])
    q1 = p + 0.1 * np.c_[-p[:, 1], p[:, 0], 0 * p[:, 0]]
    q2 = q1 + 0.1 * np.c_[-q1[:, 1], q1[:, 0], 0 * q1[:, 0]]
    np.testing.assert_allclose(t2[2], q2, atol=1e-5)
    with pytest.raises(ShapeError, match="clouds= is required"):
        propagate(p, flows)
    with pytest.raises(ShapeError, match="one cloud per flow"):
        propagate(p, flows, clouds[:2])


def test_accumulate_static_scene_with_given_flows():
    # three sweeps of the same static points seen from an ego moving +1 m in x each step
    rng = np.random.default_rng(1)
    world = rng.uniform(-10, 10, (300, 3)).astype(np.float32)
    clouds = [world - np.float32([t, 0, 0]) for t in range(3)]
    flows = [np.broadcast_to(np.float32([-1, 0, 0]), c.shape).copy() for c in clouds[:-1]]
    pts, src = accumulate(clouds, flows=flows)
    assert pts.shape == (900, 3) and np.bincount(src).tolist() == [300, 300, 300]
    # every sweep lands on the last sweep's coordinates of the same world points
    for t in range(3):
        np.testing.assert_allclose(pts[src == t], clouds[2], atol=1e-5)


def test_accumulate_estimates_flows_with_icp():
    from motionflow.datasets.synthetic import synthetic_lidar_pair

    s = synthetic_lidar_pair(seed=0, num_boxes=8, num_moving=0)
    pts, src = accumulate([s.pc1, s.pc2], method="icp")
    moved = pts[src == 0]
    np.testing.assert_allclose(moved, s.pc1 + s.flow, atol=0.05)
