"""RAFT parity with the official outputs (../shared/parity/raft.npz, SPEC sections 1-4).

Weights come from the recipe with the fixture's salt (all checksums verified first), are saved in the
official DataParallel layout (``module.`` keys) and loaded through ``create_model("raft", checkpoint=...)``,
the same path as a downloaded ``raft-things.pth``. Sizes and the iteration count come from the arrays.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from motionflow.models import create_model

ATOL = 2e-4  # SPEC section 3: full-resolution flows
ATOL_LOW = 5e-5  # low-resolution flows


@pytest.fixture(scope="module")
def raft_case(parity_fixture, tmp_path_factory):
    fx = parity_fixture("raft")
    ckpt = fx.checkpoint_file(tmp_path_factory.mktemp("raft_ckpt"))
    model = create_model("raft", checkpoint=ckpt)
    return fx, model


def _run(model, fx, warm: bool):
    iters = fx["expected_flow_predictions"].shape[0]
    img1, img2 = fx.tensor("input_image1"), fx.tensor("input_image2")
    flow_init = fx.tensor("input_flow_init") if warm else None
    with torch.no_grad():
        preds = model(img1, img2, iters=iters, flow_init=flow_init, test_mode=False)
        low, up = model(img1, img2, iters=iters, flow_init=flow_init, test_mode=True)
    return torch.stack(preds), low, up


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm_start"])
def test_raft_parity(raft_case, warm):
    fx, model = raft_case
    preds, low, up = _run(model, fx, warm)
    prefix = "expected_warm_" if warm else "expected_"
    fx.assert_close(prefix + "flow_predictions", preds, atol=ATOL)
    fx.assert_close(prefix + "flow_low", low, atol=ATOL_LOW)
    fx.assert_close(prefix + "flow_up", up, atol=ATOL)


def test_raft_parity_memory_bounded(raft_case, memory_bounded):
    """The memory-bounded path (on-demand correlation, RAFT's only one) forced on: the same outputs."""
    fx, model = raft_case
    with memory_bounded(model):
        preds, low, up = _run(model, fx, warm=True)
    fx.assert_close("expected_warm_flow_predictions", preds, atol=ATOL)
    fx.assert_close("expected_warm_flow_low", low, atol=ATOL_LOW)
    fx.assert_close("expected_warm_flow_up", up, atol=ATOL)


def test_raft_parity_intermediates(raft_case):
    """Encoder and first-iteration tensors (public fixture only; skipped for other fixture files)."""
    fx, model = raft_case
    if "inter_cnet" not in fx:
        pytest.skip("fixture has no inter_* arrays (only the public files do)")
    img1, img2 = fx.tensor("input_image1"), fx.tensor("input_image2")
    x1, x2 = 2 * (img1 / 255.0) - 1.0, 2 * (img2 / 255.0) - 1.0
    with torch.no_grad():
        fnet = torch.cat(model.fnet([x1, x2]))
        cnet = model.cnet(x1)
    for name, got in [("inter_fnet", fnet), ("inter_cnet", cnet)]:
        ref = fx[name]
        tol = max(1e-4 * np.abs(ref).max(), 1e-6)
        fx.assert_close(name, got, atol=tol)


def test_raft_parity_detects_alias_order(parity_fixture, tmp_path):
    """Taking ``norm3.*`` instead of ``downsample.1.*`` (the wrong alias) must change the output."""
    fx = parity_fixture("raft")
    sd = fx.state_dict()
    for layer in ("layer2", "layer3"):
        for f in ("weight", "bias", "running_mean", "running_var"):
            sd[f"cnet.{layer}.0.downsample.1.{f}"] = sd[f"cnet.{layer}.0.norm3.{f}"]
    model = create_model("raft", checkpoint={"module." + k: v for k, v in sd.items()})
    iters = fx["expected_flow_predictions"].shape[0]
    with torch.no_grad():
        _, up = model(fx.tensor("input_image1"), fx.tensor("input_image2"), iters=iters, test_mode=True)
    diff = np.abs(up.numpy() - fx["expected_flow_up"]).max()
    assert diff > 10 * ATOL, f"wrong alias choice changed the flow by only {diff:g}"
