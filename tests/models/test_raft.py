"""RAFT structure and behaviour beyond the parity fixture."""

from __future__ import annotations

import pytest
import torch

from motionflow.models import NETWORKS, create_model
from motionflow.models.raft import RAFT_ALIASES, RAFT


def test_state_dict_is_the_official_layout(parity_fixture):
    """Our keys plus the 10 aliases are exactly the 179 official entries, with the official shapes."""
    fx = parity_fixture("raft")
    sd = create_model("raft").state_dict()
    official = {e["key"]: tuple(e["shape"]) for e in fx.entries}
    assert set(sd) | set(RAFT_ALIASES) == set(official)
    assert not set(sd) & set(RAFT_ALIASES)
    for k, v in sd.items():
        assert tuple(v.shape) == official[k], k
    # the aliases are exactly the entries the JSON marks as sharing a tensor, resolved to the JSON's choice
    aliased = {e["key"]: e["effective_value_from"] for e in fx.entries if "aliases_same_tensor" in e}
    assert {k: v for k, v in aliased.items() if k != v} == RAFT_ALIASES


def test_parameter_count():
    model = create_model("raft")
    assert sum(p.numel() for p in model.parameters()) == 5_257_536  # RAFT large (torchvision raft_large too)
    assert NETWORKS["raft"] == "motionflow.models.raft:build_raft"
    assert isinstance(model, RAFT) and not model.training


def test_on_demand_correlation_gives_the_same_flow():
    torch.manual_seed(0)
    model = create_model("raft")
    x1 = torch.rand(1, 3, 128, 136) * 255
    x2 = torch.roll(x1, shifts=(2, 3), dims=(2, 3))
    with torch.no_grad():
        ref_low, ref_up = model(x1, x2, iters=2, test_mode=True)
        model.corr_on_demand = True
        low, up = model(x1, x2, iters=2, test_mode=True)
    torch.testing.assert_close(low, ref_low, rtol=0, atol=1e-4)
    torch.testing.assert_close(up, ref_up, rtol=0, atol=1e-3)


def test_below_128_px_the_bare_network_is_nan_and_the_method_is_not():
    """SPEC section 2: the coarsest correlation level collapses to one pixel below 128 px."""
    torch.manual_seed(0)
    model = create_model("raft")
    x = torch.rand(1, 3, 64, 128) * 255
    with torch.no_grad():
        low, _ = model(x, x, iters=1, test_mode=True)
    assert torch.isnan(low).all()
    from motionflow.models.method import NetworkFlowMethod
    from motionflow.models.raft import RAFT_SPEC

    pred = NetworkFlowMethod(RAFT_SPEC, model, iters=1, device="cpu")(torch.stack([x, x], dim=1))
    assert pred.flow.shape == (1, 1, 2, 64, 128) and torch.isfinite(pred.flow).all()


def test_correlation_stays_float32_under_autocast():
    """As the official code: autocast covers the encoders and the update block, not the correlation."""
    torch.manual_seed(0)
    model = create_model("raft")
    x1 = torch.rand(1, 3, 128, 128) * 255
    x2 = torch.roll(x1, shifts=(1, 2), dims=(2, 3))
    seen = []
    update = model.update_block.forward

    def spy(net, inp, corr, flow):
        seen.append((net.dtype, corr.dtype, flow.dtype))
        return update(net, inp, corr, flow)

    model.update_block.forward = spy
    with torch.no_grad():
        ref = model(x1, x2, iters=1, test_mode=True)[1]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low, up = model(x1, x2, iters=1, test_mode=True)
    assert seen == [(torch.float32,) * 3, (torch.bfloat16, torch.float32, torch.float32)]
    assert low.dtype == up.dtype == torch.float32
    assert (up - ref).abs().max() < 0.05 * ref.abs().max()


def test_forward_checks_its_inputs():
    from motionflow.errors import ShapeError

    model = create_model("raft")
    x = torch.zeros(1, 3, 128, 128)
    with pytest.raises(ShapeError, match=r"multiples of 8 \(pad first\), found 130x130"):
        model(torch.zeros(1, 3, 130, 130), torch.zeros(1, 3, 130, 130), iters=1)
    with pytest.raises(ShapeError, match=r"image2: expected the shape of image1 \(1, 3, 128, 128\), found \(1, 3, 128, 136\)"):
        model(x, torch.zeros(1, 3, 128, 136), iters=1)
    with pytest.raises(ShapeError, match=r"image1: expected a tensor \(B, 3, H, W\).*found \(3, 128, 128\)"):
        model(x[0], x, iters=1)
