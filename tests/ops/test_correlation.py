"""Correlation volume and RAFT lookup: einsum / explicit bilinear oracles, on-demand == full."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from motionflow.errors import ShapeError
from motionflow.ops import CorrPyramid, OnDemandCorrPyramid, all_pairs_correlation, coords_grid


def _fmaps(b=2, c=8, h=9, w=11, dtype=torch.float64):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(b, c, h, w, generator=g, dtype=dtype), torch.randn(b, c, h, w, generator=g, dtype=dtype))


def test_all_pairs_correlation_matches_einsum():
    f1, f2 = _fmaps(c=7)
    ref = torch.einsum("bcij,bckl->bijkl", f1, f2) / np.sqrt(7.0)
    out = all_pairs_correlation(f1, f2)
    assert out.shape == (2, 9, 11, 9, 11)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


def _bilinear_zero_pad(vol: np.ndarray, x: float, y: float) -> float:
    """Plain bilinear interpolation of a 2-D array at pixel (x, y), zero outside."""
    h, w = vol.shape
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    ax, ay = x - x0, y - y0
    total = 0.0
    for cx, cy, wt in ((x0, y0, (1 - ax) * (1 - ay)), (x0 + 1, y0, ax * (1 - ay)),
                       (x0, y0 + 1, (1 - ax) * ay), (x0 + 1, y0 + 1, ax * ay)):
        if 0 <= cx < w and 0 <= cy < h:
            total += wt * vol[cy, cx]
    return total


def test_lookup_matches_explicit_bilinear_sampling_in_raft_channel_order():
    levels, r = 3, 2
    n = 2 * r + 1
    f1, f2 = _fmaps(b=1, c=5, h=8, w=12)
    g = torch.Generator().manual_seed(2)
    coords = coords_grid(1, 8, 12, dtype=torch.float64) + 3 * torch.randn(1, 2, 8, 12, generator=g, dtype=torch.float64)
    out = CorrPyramid(f1, f2, num_levels=levels, radius=r)(coords).numpy()
    assert out.shape == (1, levels * n * n, 8, 12)
    rng = np.random.default_rng(0)
    for _ in range(12):
        i, j = int(rng.integers(8)), int(rng.integers(12))
        for lvl in range(levels):
            f2l = F.avg_pool2d(f2, 2**lvl) if lvl else f2
            vol = torch.einsum("c,ckl->kl", f1[0, :, i, j], f2l[0]).numpy() / np.sqrt(5.0)
            cx, cy = coords[0, 0, i, j].item() / 2**lvl, coords[0, 1, i, j].item() / 2**lvl
            for a in range(-r, r + 1):  # x offset: outer index (RAFT meshgrid(dy, dx) added to (x, y))
                for bb in range(-r, r + 1):  # y offset: inner index
                    ch = lvl * n * n + (a + r) * n + (bb + r)
                    ref = _bilinear_zero_pad(vol, cx + a, cy + bb)
                    assert out[0, ch, i, j] == pytest.approx(ref, abs=1e-9), (lvl, a, bb)


def test_levels_are_raft_pyramid():
    f1, f2 = _fmaps(b=2, c=4, h=9, w=11)
    pyr = CorrPyramid(f1, f2, num_levels=3, radius=1)
    assert [tuple(t.shape) for t in pyr.levels] == [(2 * 99, 1, 9, 11), (198, 1, 4, 5), (198, 1, 2, 2)]
    assert pyr.out_channels == 27


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_on_demand_equals_full_lookup(dtype):
    f1, f2 = _fmaps(b=2, c=16, h=13, w=19, dtype=dtype)
    g = torch.Generator().manual_seed(3)
    coords = coords_grid(2, 13, 19, dtype=dtype) + 6 * torch.randn(2, 2, 13, 19, generator=g, dtype=dtype)
    coords[0, :, 0, 0] = torch.tensor([-30.0, 50.0], dtype=dtype)  # far outside: all zeros
    coords[1, :, 2, 3] = torch.tensor([4.0, 7.0], dtype=dtype)  # exactly integer
    full = CorrPyramid(f1, f2, num_levels=3, radius=3)(coords)
    # a tiny chunk budget forces one row per chunk
    lazy = OnDemandCorrPyramid(f1, f2, num_levels=3, radius=3, max_chunk_bytes=1)(coords)
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(lazy, full, rtol=tol, atol=tol)
    assert full[0, :, 0, 0].abs().max() == 0


def test_on_demand_gradients_match_full():
    f1, f2 = _fmaps(b=1, c=4, h=6, w=7)
    f1.requires_grad_(True)
    f2.requires_grad_(True)
    coords = coords_grid(1, 6, 7, dtype=torch.float64) + 0.37
    w = torch.randn(1, 2 * 9, 6, 7, dtype=torch.float64)
    grads = []
    for cls in (CorrPyramid, OnDemandCorrPyramid):
        out = cls(f1, f2, num_levels=2, radius=1)(coords)
        grads.append(torch.autograd.grad((out * w).sum(), (f1, f2)))
    for ga, gb in zip(*grads):
        torch.testing.assert_close(ga, gb, rtol=1e-10, atol=1e-10)


def test_correlation_errors_name_the_argument():
    f1, f2 = _fmaps()
    with pytest.raises(ShapeError, match=r"fmap1: expected a feature map of shape \(B, C, H, W\)"):
        all_pairs_correlation(f1[0], f2)
    with pytest.raises(ShapeError, match="fmap2: batch and channel sizes must match"):
        CorrPyramid(f1, f2[:, :3])
    pyr = OnDemandCorrPyramid(f1, f2)
    with pytest.raises(ShapeError, match=r"coords: expected shape \(2, 2, 9, 11\)"):
        pyr(torch.zeros(2, 2, 9, 10, dtype=torch.float64))
    with pytest.raises(ShapeError, match="num_levels"):
        CorrPyramid(f1, f2, num_levels=0)
