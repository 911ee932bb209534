"""Convex upsampling (RAFT) against a naive loop, and magnitude-correct flow resizing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from motionflow.errors import ShapeError
from motionflow.ops import ConvexUpsample, convex_upsample, resize_flow


def test_constant_flow_upsamples_to_factor_times_constant_inside():
    flow = torch.zeros(1, 2, 5, 6)
    flow[:, 0], flow[:, 1] = 1.25, -0.5
    mask = torch.randn(1, 9 * 64, 5, 6)
    up = convex_upsample(flow, mask, factor=8)
    assert up.shape == (1, 2, 40, 48)
    inner = up[:, :, 8:32, 8:40]  # coarse pixels whose 3x3 neighbourhood is inside the image
    torch.testing.assert_close(inner[:, 0], torch.full_like(inner[:, 0], 10.0))
    torch.testing.assert_close(inner[:, 1], torch.full_like(inner[:, 1], -4.0))


def test_convex_upsample_matches_naive_loop():
    f = 3
    g = torch.Generator().manual_seed(0)
    flow = torch.randn(2, 2, 3, 4, generator=g, dtype=torch.float64)
    mask = torch.randn(2, 9 * f * f, 3, 4, generator=g, dtype=torch.float64)
    up = ConvexUpsample(factor=f)(flow, mask).numpy()
    fl, mk = flow.numpy(), mask.numpy().reshape(2, 9, f, f, 3, 4)
    ref = np.zeros((2, 2, 3 * f, 4 * f))
    for b in range(2):
        for i in range(3):
            for j in range(4):
                for dy in range(f):
                    for dx in range(f):
                        logits = mk[b, :, dy, dx, i, j]
                        wts = np.exp(logits - logits.max())
                        wts /= wts.sum()
                        acc = np.zeros(2)
                        for k in range(9):
                            ni, nj = i + k // 3 - 1, j + k % 3 - 1  # unfold order: row-major 3x3
                            if 0 <= ni < 3 and 0 <= nj < 4:
                                acc += wts[k] * f * fl[b, :, ni, nj]
                        ref[b, :, f * i + dy, f * j + dx] = acc
    np.testing.assert_allclose(up, ref, rtol=1e-12, atol=1e-12)


def test_resize_flow_rescales_each_component():
    flow = torch.zeros(1, 2, 8, 10)
    flow[:, 0], flow[:, 1] = 3.0, -2.0
    out = resize_flow(flow, (16, 5))
    assert out.shape == (1, 2, 16, 5)
    torch.testing.assert_close(out[:, 0], torch.full((1, 16, 5), 1.5))
    torch.testing.assert_close(out[:, 1], torch.full((1, 16, 5), -4.0))


def test_resize_flow_of_a_zoom_field_stays_a_zoom_field():
    # u = 0.1 * (x + 0.5) zooms about the image's left edge; with align_corners=False pixel x' of a 2x
    # wider image covers x = (x' + 0.5) / 2 - 0.5, so the resized field is u' = 0.1 * (x' + 0.5)
    x = torch.arange(9.0)
    flow = torch.zeros(1, 2, 4, 9)
    flow[:, 0] = 0.1 * (x + 0.5)
    out = resize_flow(flow, (8, 18))
    expected = 0.1 * (torch.arange(18.0) + 0.5)
    torch.testing.assert_close(out[0, 0, 3, 1:-1], expected[1:-1], atol=1e-5, rtol=0)  # borders clamp
    assert out[0, 1].abs().max() == 0


def test_upsample_errors():
    with pytest.raises(ShapeError, match=r"mask: expected shape \(1, 576, 5, 6\)"):
        convex_upsample(torch.zeros(1, 2, 5, 6), torch.zeros(1, 575, 5, 6))
    with pytest.raises(ShapeError, match=r"flow: expected a flow of shape \(B, 2, H, W\)"):
        resize_flow(torch.zeros(2, 5, 6), (3, 3))
    with pytest.raises(ShapeError, match="size: expected"):
        resize_flow(torch.zeros(1, 2, 5, 6), (0, 3))
