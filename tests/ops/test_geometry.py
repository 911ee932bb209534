import math

import numpy as np
import pytest
import torch

from motionflow.errors import ShapeError
from motionflow.ops.geometry import (apply_transform, backproject_depth, compose_transforms, depth_to_disparity,
                                     disparity_to_depth, ego_flow, invert_transform, project_points,
                                     scene_flow_to_optical_flow)


def _rot_z(a, t=(0, 0, 0)):
    T = np.eye(4)
    T[:2, :2] = [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]
    T[:3, 3] = t
    return T


def test_transform_round_trips():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(50, 3))
    A, B = _rot_z(0.3, (1, 2, 3)), _rot_z(-1.1, (0, -1, 0.5))
    q = apply_transform(p, A)
    np.testing.assert_allclose(q.numpy(), p @ A[:3, :3].T + A[:3, 3])
    np.testing.assert_allclose(apply_transform(q, invert_transform(A)).numpy(), p, atol=1e-12)
    np.testing.assert_allclose(invert_transform(A).numpy(), np.linalg.inv(A), atol=1e-12)
    np.testing.assert_allclose(apply_transform(p, compose_transforms(A, B)).numpy(),
                               apply_transform(apply_transform(p, B), A).numpy(), atol=1e-12)
    # a 90 degree yaw moves (1, 0, 0) to (0, 1, 0): hand computed
    np.testing.assert_allclose(ego_flow(np.array([[1.0, 0, 0]]), _rot_z(math.pi / 2)).numpy(), [[-1, 1, 0]], atol=1e-12)
    batched = apply_transform(np.stack([p, p]), np.stack([A, B]))
    np.testing.assert_allclose(batched[1].numpy(), apply_transform(p, B).numpy())
    # tensors take the torch path (differentiable) and agree with the numpy core
    pt = torch.tensor(p, requires_grad=True)
    qt = apply_transform(pt, torch.tensor(A))
    np.testing.assert_allclose(qt.detach().numpy(), q.numpy(), atol=1e-12)
    qt.sum().backward()
    np.testing.assert_allclose(pt.grad.numpy(), np.tile(A[:3, :3].sum(0), (50, 1)), atol=1e-12)  # d(sum Rp)/dp
    np.testing.assert_allclose(invert_transform(torch.tensor(A)).numpy(), invert_transform(A).numpy(), atol=1e-15)
    assert apply_transform(p.astype(np.float32), A).dtype == torch.float32


def test_projection_and_backprojection():
    K = np.array([[500.0, 0, 320], [0, 400.0, 240], [0, 0, 1]])
    uv, z = project_points(np.array([[1.0, 2.0, 10.0], [0, 0, -1.0]]), K)
    np.testing.assert_allclose(uv[0].numpy(), [370, 320])
    assert torch.isnan(uv[1]).all()
    depth = np.full((4, 5), 2.0)
    depth[0, 0] = 0
    pts = backproject_depth(depth, K)
    assert pts.shape == (4, 5, 3) and torch.isnan(pts[0, 0]).all()
    uv2, z2 = project_points(pts[1:].reshape(-1, 3), K)
    v, u = np.meshgrid(np.arange(1, 4), np.arange(5), indexing="ij")
    np.testing.assert_allclose(uv2.numpy(), np.stack([u.ravel(), v.ravel()], -1), atol=1e-9)
    np.testing.assert_allclose(z2.numpy(), 2.0)
    # a point moving along x by 1 m at depth 10 moves fx/10 = 50 px right
    of = scene_flow_to_optical_flow(np.array([[0.0, 0, 10]]), np.array([[1.0, 0, 0]]), K)
    np.testing.assert_allclose(of.numpy(), [[50, 0]])


def test_disparity_depth():
    d = np.array([10.0, 0.0])
    z = disparity_to_depth(d, 721.5, 0.54)
    assert float(z[0]) == pytest.approx(721.5 * 0.54 / 10) and math.isinf(float(z[1]))
    np.testing.assert_allclose(depth_to_disparity(z, 721.5, 0.54).numpy(), [10.0, 0.0])


def test_geometry_errors():
    with pytest.raises(ShapeError, match=r"T: expected a \(4, 4\) rigid transform, found shape \(3, 3\)"):
        apply_transform(np.zeros((2, 3)), np.eye(3))  # numpy: checked by motionflow.geometry
    with pytest.raises(ShapeError, match=r"T: expected a \(\.\.\., 4, 4\) transform, found \(3, 3\)"):
        apply_transform(torch.zeros((2, 3)), np.eye(3))
    with pytest.raises(ShapeError, match="points: expected"):
        apply_transform(np.zeros((2, 2)), np.eye(4))
    with pytest.raises(ShapeError, match="K: expected"):
        project_points(np.zeros((2, 3)), np.eye(4))
    with pytest.raises(ShapeError, match="flow: expected shape"):
        scene_flow_to_optical_flow(np.zeros((2, 3)), np.zeros((3, 3)), np.eye(3))
