"""Backward warping, forward splatting and flow composition against roll / closed-form oracles."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from motionflow.errors import ShapeError
from motionflow.ops import BackwardWarp, backward_warp, compose_flows, coords_grid, forward_splat


def _const_flow(b, h, w, u, v, dtype=torch.float32):
    f = torch.zeros(b, 2, h, w, dtype=dtype)
    f[:, 0], f[:, 1] = u, v
    return f


def test_coords_grid_is_x_first_pixel_centres():
    g = coords_grid(2, 3, 4)
    assert g.shape == (2, 2, 3, 4)
    assert g[1, 0, 2].tolist() == [0, 1, 2, 3]  # x = column
    assert g[1, 1, :, 3].tolist() == [0, 1, 2]  # y = row


def test_zero_flow_is_identity():
    x = torch.randn(2, 3, 7, 9)
    out, inside = backward_warp(x, torch.zeros(2, 2, 7, 9))
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)
    assert inside.all()


def test_integer_translation_matches_roll_in_the_interior():
    x = torch.randn(1, 2, 10, 12)
    out, inside = backward_warp(x, _const_flow(1, 10, 12, 3, -2))
    ref = torch.roll(x, shifts=(2, -3), dims=(2, 3))  # out(y, x) = x(y - 2, x + 3)
    torch.testing.assert_close(out[..., 2:, :-3], ref[..., 2:, :-3], atol=1e-5, rtol=0)
    # zero padding outside (up to float rounding of the normalised grid), the mask says what was inside
    assert out[..., :2, :].abs().max() < 1e-5 and out[..., :, -3:].abs().max() < 1e-5
    expected = torch.zeros(1, 10, 12, dtype=torch.bool)
    expected[:, 2:, :-3] = True
    assert torch.equal(inside, expected)


def test_matches_raft_bilinear_sampler_and_module_twin():
    from motionflow.ops.correlation import bilinear_sampler

    x = torch.randn(2, 3, 8, 10, dtype=torch.float64)
    flow = 2.5 * torch.randn(2, 2, 8, 10, dtype=torch.float64)
    out, _ = backward_warp(x, flow)
    ref = bilinear_sampler(x, (coords_grid(2, 8, 10, dtype=torch.float64) + flow).permute(0, 2, 3, 1))
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=0)
    out2, _ = BackwardWarp()(x, flow)
    torch.testing.assert_close(out2, out)


def test_half_pixel_sample_is_average_of_neighbours():
    x = torch.arange(12.0).view(1, 1, 3, 4)
    out, _ = backward_warp(x, _const_flow(1, 3, 4, 0.5, 0.0))
    assert out[0, 0, 1, 1].item() == pytest.approx((x[0, 0, 1, 1] + x[0, 0, 1, 2]).item() / 2, abs=1e-5)
    near, _ = backward_warp(x, _const_flow(1, 3, 4, 0.7, 0.0), mode="nearest")
    assert near[0, 0, 1, 1].item() == x[0, 0, 1, 2].item()


def test_backward_warp_gradcheck_float64():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64, generator=g, requires_grad=True)
    flow = (0.3 + 0.4 * torch.rand(1, 2, 4, 5, dtype=torch.float64, generator=g)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, f: backward_warp(a, f)[0], (x, flow), eps=1e-6, atol=1e-5)


def test_compose_two_translations():
    f_ab = _const_flow(1, 6, 8, 1.5, -0.5)
    f_bc = _const_flow(1, 6, 8, 2.0, 1.0)
    f_ac = compose_flows(f_ab, f_bc)
    torch.testing.assert_close(f_ac, _const_flow(1, 6, 8, 3.5, 0.5), atol=1e-5, rtol=0)


def test_compose_translation_then_field():
    g = torch.Generator().manual_seed(4)
    f_bc = torch.randn(1, 2, 9, 9, generator=g)
    f_ac = compose_flows(_const_flow(1, 9, 9, 2, 1), f_bc)
    ref = _const_flow(1, 9, 9, 2, 1) + torch.roll(f_bc, shifts=(-1, -2), dims=(2, 3))
    torch.testing.assert_close(f_ac[..., :-1, :-2], ref[..., :-1, :-2], atol=1e-5, rtol=0)


def test_splat_translation_matches_roll():
    x = torch.randn(1, 3, 8, 10)
    out, covered = forward_splat(x, _const_flow(1, 8, 10, 2, 1))
    ref = torch.roll(x, shifts=(1, 2), dims=(2, 3))  # out(y, x) = x(y - 1, x - 2)
    torch.testing.assert_close(out[..., 1:, 2:], ref[..., 1:, 2:])
    assert not covered[:, 0].any() and not covered[:, :, :2].any() and covered[:, 1:, 2:].all()
    assert out[..., 0, :].abs().max() == 0


def test_splat_collisions_average_and_softmax():
    # two source pixels (0,0) and (0,2) of a 1x3 image land on target (0,1)
    x = torch.tensor([[[[1.0, 5.0, 3.0]]]])
    flow = torch.zeros(1, 2, 1, 3)
    flow[0, 0, 0, 0], flow[0, 0, 0, 2], flow[0, 0, 0, 1] = 1.0, -1.0, 10.0  # middle pixel leaves
    avg, cov = forward_splat(x, flow)
    assert avg[0, 0, 0, 1].item() == pytest.approx(2.0)
    assert cov.tolist() == [[[False, True, False]]]
    z = torch.tensor([[[[0.0, 0.0, 3.0]]]])
    soft, _ = forward_splat(x, flow, weights=z, mode="softmax")
    e = torch.exp(torch.tensor(3.0)).item()
    assert soft[0, 0, 0, 1].item() == pytest.approx((1.0 + 3.0 * e) / (1.0 + e), rel=1e-6)
    lin, _ = forward_splat(x, flow, weights=torch.tensor([[[[1.0, 1.0, 3.0]]]]))
    assert lin[0, 0, 0, 1].item() == pytest.approx((1.0 + 9.0) / 4.0)


def test_splat_fractional_target_conserves_weight():
    x = torch.ones(1, 1, 6, 6)
    out, covered = forward_splat(x, _const_flow(1, 6, 6, 0.25, 0.5))
    torch.testing.assert_close(out[:, 0][covered], torch.ones(int(covered.sum())))
    assert int(covered.sum()) == 36  # every target pixel receives a share of some source


def test_splat_gradcheck_float64():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 1, 3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    flow = (0.2 + 0.5 * torch.rand(1, 2, 3, 4, dtype=torch.float64, generator=g)).requires_grad_(True)
    z = torch.randn(1, 1, 3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    fn = lambda a, f, w: forward_splat(a, f, weights=w, mode="softmax")[0]  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, flow, z), eps=1e-6, atol=1e-5)


def test_warp_errors_name_the_argument():
    x = torch.zeros(1, 3, 4, 5)
    with pytest.raises(ShapeError, match=r"x: expected a 4-D tensor \(B, C, H, W\), found shape \(3, 4, 5\)"):
        backward_warp(x[0], torch.zeros(1, 2, 4, 5))
    with pytest.raises(ShapeError, match=r"flow: expected a flow of shape \(B, 2, H, W\), found shape \(1, 3, 4, 5\)"):
        backward_warp(x, torch.zeros(1, 3, 4, 5))
    with pytest.raises(ShapeError, match="flow: batch and spatial size must match x"):
        forward_splat(x, torch.zeros(1, 2, 4, 6))
    with pytest.raises(ShapeError, match="weights: softmax splatting needs an importance metric"):
        forward_splat(x, torch.zeros(1, 2, 4, 5), mode="softmax")
    with pytest.raises(ShapeError, match="mode: expected one of"):
        forward_splat(x, torch.zeros(1, 2, 4, 5), mode="max")
    with pytest.raises(ShapeError, match="f_bc: batch and spatial size must match f_ab"):
        compose_flows(torch.zeros(1, 2, 4, 5), torch.zeros(2, 2, 4, 5))
    with pytest.raises(ShapeError, match="padding"):
        backward_warp(x, torch.zeros(1, 2, 4, 5), padding="wrap")
    _ = F  # torch.nn.functional imported for readers comparing with grid_sample
