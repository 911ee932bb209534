"""Parity of VideoFlow BOF and MOF with the official outputs (../shared/parity, SPEC sections 5, 6, 10).

Weights come from the fixture's recipe (salt read from the file, every checksum verified first), are
saved in the official checkpoint layout (``module.`` keys) and loaded through the strict loader, like
a downloaded ``BOF_*.pth`` / ``MOF_*.pth``. Sizes and the iteration count come from the fixture arrays.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from motionflow.models import create_model
from motionflow.ops.correlation import CorrPyramid
from motionflow.ops.warp import coords_grid

# SPEC section 3
BOF_ATOL, BOF_LOW_ATOL = 2e-4, 5e-5
MOF_ATOL, MOF_MEAN_ATOL = 2e-3, 2e-5


def _run(parity_fixture, tmp_path_factory, fixture_name, method_name):
    fx = parity_fixture(fixture_name)
    ckpt = fx.checkpoint_file(tmp_path_factory.mktemp(fixture_name))  # verifies every checksum first
    iters = fx["expected_flow_predictions"].shape[0]
    model = create_model(method_name, checkpoint=ckpt, decoder_depth=iters)
    with torch.no_grad():
        out = model(fx.tensor("input_images"))
    return fx, model, out


@pytest.fixture(scope="module")
def bof(parity_fixture, tmp_path_factory):
    return _run(parity_fixture, tmp_path_factory, "videoflow_bof", "videoflow-bof")


@pytest.fixture(scope="module")
def mof(parity_fixture, tmp_path_factory):
    return _run(parity_fixture, tmp_path_factory, "videoflow_mof", "videoflow-mof")


def test_videoflow_bof_parity(bof):
    fx, model, out = bof
    assert len(out.flow_predictions) == fx["expected_flow_predictions"].shape[0]
    fx.assert_close("expected_flow_predictions", torch.stack(out.flow_predictions), atol=BOF_ATOL)
    fx.assert_close("expected_flow_final", out.flow, atol=BOF_ATOL)
    fx.assert_close("expected_flow_low", out.flow_low, atol=BOF_LOW_ATOL)


def test_videoflow_mof_parity(mof):
    fx, model, out = mof
    assert len(out.flow_predictions) == fx["expected_flow_predictions"].shape[0]
    fx.assert_close(
        "expected_flow_predictions", torch.stack(out.flow_predictions), atol=MOF_ATOL, mean_atol=MOF_MEAN_ATOL
    )
    fx.assert_close("expected_flow_final", out.flow, atol=MOF_ATOL, mean_atol=MOF_MEAN_ATOL)


# ------------------------------------------------------------------------------ memory-bounded paths (issue 21)
def test_videoflow_bof_parity_memory_bounded(bof, memory_bounded):
    """Every memory-bounded path forced on (on-demand correlation, fused Twins sub-sampled attention,
    LSA / MLP in chunks, GMA attention as factors) and only the last iteration upsampled (the method
    adapter's call): the same outputs at the same tolerances."""
    fx, model, _ = bof
    with memory_bounded(model), torch.no_grad():
        out = model(fx.tensor("input_images"), all_iterations=False)
    assert len(out.flow_predictions) == 1
    fx.assert_close("expected_flow_final", out.flow, atol=BOF_ATOL)
    fx.assert_close("expected_flow_low", out.flow_low, atol=BOF_LOW_ATOL)


def test_videoflow_mof_parity_memory_bounded(mof, memory_bounded):
    fx, model, _ = mof
    with memory_bounded(model), torch.no_grad():
        out = model(fx.tensor("input_images"))
    fx.assert_close(
        "expected_flow_predictions", torch.stack(out.flow_predictions), atol=MOF_ATOL, mean_atol=MOF_MEAN_ATOL
    )
    fx.assert_close("expected_flow_final", out.flow, atol=MOF_ATOL, mean_atol=MOF_MEAN_ATOL)


# ------------------------------------------------------------------------------ intermediates (section 10)
def _inter(fx, name):
    if "inter_" + name not in fx:
        pytest.skip(f"{fx.npz_path.name} has no inter_* arrays (only the public fixtures do)")
    return fx["inter_" + name]


def _close(fx, name, mine, sl=None):
    """SPEC section 10 check: ``max|d| <= 1e-4 * max|expected|`` after the stored slice."""
    ref = _inter(fx, name)
    mine = mine.detach().numpy()
    if sl is not None:
        mine = mine[sl]
    assert mine.shape == ref.shape, f"inter_{name}: shape {mine.shape}, expected {ref.shape}"
    d = np.abs(mine - ref).max()
    assert d <= 1e-4 * np.abs(ref).max(), f"inter_{name}: max|diff| {d:.3g} (max|ref| {np.abs(ref).max():.3g})"


def _encoders(fx, model, centre):
    imgs = fx.tensor("input_images")
    b, n, _, h, w = imgs.shape
    x = 2 * (imgs / 255.0) - 1.0
    stage1 = model.fnet.svt.stage(0, x.reshape(b * n, 3, h, w))
    fmaps = model.fnet.svt.stage(1, stage1)
    cnet = model.cnet(x[:, centre].reshape(-1, 3, h, w))
    return stage1, fmaps, cnet


def _tensor(fx, name):
    return torch.from_numpy(np.array(_inter(fx, name)))


@torch.no_grad()
def test_videoflow_bof_parity_intermediates(bof):
    fx, model, _ = bof
    _inter(fx, "fnet")
    stage1, fmaps, cnet = _encoders(fx, model, slice(1, 2))
    _close(fx, "fnet_stage1", stage1)
    _close(fx, "fnet", fmaps)
    _close(fx, "cnet", cnet)
    _close(fx, "net_init", torch.tanh(cnet[:, :128]))
    _close(fx, "inp", torch.relu(cnet[:, 128:]))

    # every later stage is fed the official tensors of the stage before, so a failure is local
    inp, net0, f = _tensor(fx, "inp"), _tensor(fx, "net_init"), _tensor(fx, "fnet")
    h, w = inp.shape[-2:]
    attention = model.att(inp)
    _close(fx, "gma_attention", attention, (slice(None), slice(None), slice(0, w)))
    coords0 = coords_grid(1, h, w)
    corr = torch.cat([CorrPyramid(f[1:2], f[2:3])(coords0), CorrPyramid(f[1:2], f[0:1])(coords0)], dim=1)
    _close(fx, "corr_iter1", corr)
    ub = model.update_block
    motion = ub.encoder(torch.zeros(1, 4, h, w), _tensor(fx, "corr_iter1"))
    _close(fx, "motion_iter1", motion)
    motion = _tensor(fx, "motion_iter1")
    aggregated = ub.aggregator(attention, motion)
    _close(fx, "gma_aggregate_iter1", aggregated)
    net = ub.gru(torch.cat([net0, inp, motion, _tensor(fx, "gma_aggregate_iter1")], dim=1))
    _close(fx, "net_iter1", net)
    net = _tensor(fx, "net_iter1")
    _close(fx, "delta_flow_iter1", ub.flow_head(net))
    _close(fx, "up_mask_iter1", 0.25 * ub.mask(net))


@torch.no_grad()
def test_videoflow_mof_parity_intermediates(mof):
    fx, model, _ = mof
    _inter(fx, "fnet")
    n = fx["input_images"].shape[1]
    stage1, fmaps, cnet = _encoders(fx, model, slice(1, n - 1))
    _close(fx, "fnet_stage1", stage1, (slice(None), slice(None, None, 4)))
    _close(fx, "fnet", fmaps)
    _close(fx, "cnet", cnet, (slice(None), slice(None, None, 4)))
    _close(fx, "net_init", torch.tanh(cnet[:, :128]))
    _close(fx, "inp", torch.relu(cnet[:, 128:]))

    inp, net0, f = _tensor(fx, "inp"), _tensor(fx, "net_init"), _tensor(fx, "fnet")
    t = n - 2
    h, w = inp.shape[-2:]
    attention = model.att(inp)
    _close(fx, "gma_attention", attention, (slice(None), slice(None), slice(0, w)))
    coords0 = coords_grid(t, h, w)
    _close(fx, "corr_fwd_iter1", CorrPyramid(f[1 : n - 1], f[2:n])(coords0))
    _close(fx, "corr_bwd_iter1", CorrPyramid(f[1 : n - 1], f[0 : n - 2])(coords0))
    ub = model.update_block
    zero = torch.zeros(t, 2, h, w)
    motion, hidden = ub.encoder(None, zero, zero, coords0, _tensor(fx, "corr_fwd_iter1"), _tensor(fx, "corr_bwd_iter1"), 1)
    _close(fx, "motion_iter1", motion)
    _close(fx, "motion_hidden_iter1", hidden)
    motion = _tensor(fx, "motion_iter1")
    _close(fx, "gma_aggregate_iter1", ub.aggregator(attention, motion))
    net = ub.gru(torch.cat([net0, inp, motion, _tensor(fx, "gma_aggregate_iter1")], dim=1))
    _close(fx, "net_iter1", net)
    net = _tensor(fx, "net_iter1")
    _close(fx, "delta_flow_iter1", ub.flow_head(net))
    _close(fx, "up_mask_iter1", 100.0 * ub.mask(net), (slice(None), slice(None, None, 64)))
