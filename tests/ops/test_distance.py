import numpy as np
import pytest
import torch

from motionflow.errors import ShapeError
from motionflow.ops.distance import DistanceTransform, grid_shape


def test_edt_matches_brute_force_at_nodes():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 2.0, (40, 3))
    dt = DistanceTransform(pts, voxel_size=0.1)
    X, Y, Z = dt.shape
    assert dt.shape == grid_shape(pts.min(0), pts.max(0), 0.1, 1)
    nodes = np.stack(np.meshgrid(np.arange(X), np.arange(Y), np.arange(Z), indexing="ij"), -1).reshape(-1, 3)
    centres = dt.origin + nodes * 0.1
    occupied = dt.origin + np.unique(np.rint((pts - dt.origin) / 0.1), axis=0) * 0.1
    brute = np.sqrt(((centres[:, None] - occupied[None]) ** 2).sum(-1)).min(1)
    np.testing.assert_allclose(dt.field.numpy().reshape(-1), brute, atol=1e-5)
    # querying exactly at the nodes returns the node values
    got = dt(torch.tensor(centres[::7]))
    np.testing.assert_allclose(got.numpy(), brute[::7], atol=1e-5)


def test_trilinear_between_nodes_and_outside():
    pts = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    dt = DistanceTransform(pts, voxel_size=0.5, padding=1)
    # origin = -0.5, nodes at -0.5, 0, 0.5, 1, 1.5 per axis; node (0,0,0) distance 0
    assert np.allclose(dt.origin, -0.5)
    # midway between the occupied node (0,0,0) and node (0.5,0,0) (distance 0.5): 0.25
    q = torch.tensor([[0.25, 0.0, 0.0]], dtype=torch.float64)
    assert float(dt(q)) == pytest.approx(0.25)
    # outside: clamp to the box corner (-0.5, -0.5, -0.5) (value sqrt(3)*0.5) + distance to the box
    q = torch.tensor([[-1.5, -0.5, -0.5]], dtype=torch.float64)
    assert float(dt(q)) == pytest.approx(np.sqrt(3) * 0.5 + 1.0)


def test_distance_field_gradcheck():
    rng = np.random.default_rng(1)
    pts = rng.uniform(0, 1.0, (10, 3))
    dt = DistanceTransform(pts, voxel_size=0.2)
    # avoid queries exactly on cell faces (trilinear kinks)
    q = torch.tensor(rng.uniform(-0.5, 1.5, (8, 3)) + 0.013, requires_grad=True)
    assert torch.autograd.gradcheck(dt, (q,))


def test_for_pair_covers_both_clouds_and_memory_guard():
    pc1 = np.array([[-5.0, 0, 0], [0, 0, 0]])
    pc2 = np.array([[1.0, 1, 1], [2.0, 0, 0]])
    dt = DistanceTransform.for_pair(pc1, pc2, voxel_size=0.1)
    assert np.allclose(dt.origin, [-5.1, -0.1, -0.1])
    assert dt.points_outside == 0
    assert dt.nbytes == 4 * int(np.prod(dt.shape))
    with pytest.raises(ShapeError, match=r"cells.*above max_cells=1,000.*crop"):
        DistanceTransform.for_pair(pc1, pc2, voxel_size=0.1, max_cells=1000)
    with pytest.raises(ShapeError, match="voxel_size: expected > 0"):
        DistanceTransform(pc2, voxel_size=0)
    with pytest.raises(ShapeError, match="points: expected finite"):
        DistanceTransform(np.array([[np.nan, 0, 0]]))
