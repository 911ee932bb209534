"""Edge-aware filling: unreliable pixels take the flow of reliable pixels on their side of an edge."""

import pytest
import torch

from motionflow.classical.interpolation import edge_aware_fill
from motionflow.errors import ShapeError


def _two_regions(h=48, w=64, edge=30):
    guide = torch.zeros(1, 3, h, w)
    guide[..., edge:] = 200.0  # a strong vertical colour edge at column `edge`
    flow = torch.zeros(1, 2, h, w)
    flow[:, 0, :, :edge] = 5.0  # left region moves right by 5
    flow[:, 1, :, edge:] = -3.0  # right region moves up by 3
    return guide, flow


def test_fill_respects_colour_edges():
    guide, truth = _two_regions()
    noisy = truth.clone()
    reliable = torch.ones(1, 48, 64, dtype=torch.bool)
    reliable[:, :, 20:40] = False  # a band straddling the edge is unreliable
    noisy[:, :, :, 20:40] = torch.tensor([40.0, 40.0]).view(1, 2, 1, 1)  # garbage there
    out = edge_aware_fill(noisy, reliable, guide, scale=2, iterations=20, sigma=8.0)
    err = (out - truth).norm(dim=1)[0]
    # away from the 2-px coarse cell that straddles the edge, the fill is exact per side
    assert err[:, 20:28].max() < 1e-3
    assert err[:, 32:40].max() < 1e-3
    # reliable pixels untouched
    assert torch.equal(out[..., :20], noisy[..., :20])


def test_fill_without_edges_is_a_plain_average():
    guide = torch.full((1, 3, 16, 16), 50.0)
    flow = torch.zeros(1, 2, 16, 16)
    flow[:, 0] = 2.0
    reliable = torch.ones(1, 16, 16, dtype=torch.bool)
    reliable[:, 6:10, 6:10] = False
    flow[:, :, 6:10, 6:10] = -9.0
    out = edge_aware_fill(flow, reliable, guide, scale=2, iterations=5)
    torch.testing.assert_close(out[:, 0], torch.full((1, 16, 16), 2.0))


def test_all_reliable_returns_input_and_shapes_are_checked():
    guide, flow = _two_regions()
    ok = torch.ones(1, 48, 64, dtype=torch.bool)
    assert edge_aware_fill(flow, ok, guide) is flow
    with pytest.raises(ShapeError, match="reliable, guide"):
        edge_aware_fill(flow, ok[:, :10], guide)
