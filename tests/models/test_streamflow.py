"""StreamFlow pieces: GTR temporal attention, ISC stacked encoding, the joint flow head, strict
checkpoint loading, input checks and SIM grouping in the registered method (no fixtures needed)."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from motionflow.errors import CheckpointError, ShapeError
from motionflow.models import create_model, load_official_checkpoint
from motionflow.models.blocks.streamflow_gtr import (
    TemporalTransformer,
    pixels_to_sequences,
    sequences_to_pixels,
    temporal_self_attention,
)
from motionflow.models.blocks.streamflow_isc import ISCTwinsEncoder
from motionflow.models.blocks.streamflow_update import StreamFlowUpdateBlock
from motionflow.models.blocks.twins import TwinsEncoder
from motionflow.models.method import NetworkFlowMethod
from motionflow.models.streamflow import (
    DEFAULT_ITERS,
    UNUSED_KEYS,
    StreamFlow,
    StreamFlowOutput,
    create_streamflow_method,
    streamflow_spec,
)
from motionflow.registry import get_optical_flow_method


# ------------------------------------------------------------------------------------------- GTR
def test_pixels_to_sequences_layout_and_round_trip():
    b, s, c, h, w = 2, 3, 5, 4, 6
    x = torch.randn(b * s, c, h, w)
    seq = pixels_to_sequences(x, s)
    assert seq.shape == (b * h * w, s, c)
    # token (b, y, x) step t channel k is x[b*S + t, k, y, x] (official '(B T) C H W -> (B H W) T C')
    for bi, t, k, yy, xx in [(0, 0, 0, 0, 0), (1, 2, 4, 3, 5), (1, 1, 2, 0, 3), (0, 2, 1, 2, 1)]:
        assert seq[bi * h * w + yy * w + xx, t, k] == x[bi * s + t, k, yy, xx]
    assert torch.equal(sequences_to_pixels(seq, h, w), x)


def test_temporal_self_attention_matches_einsum_oracle():
    torch.manual_seed(1)
    n, s, c = 7, 3, 16
    x = torch.randn(n, s, c)
    wqkv, wp, bp = torch.randn(3 * c, c), torch.randn(c, c), torch.randn(c)
    got = temporal_self_attention(x, wqkv, wp, bp, num_heads=1)
    q, k, v = (x @ wqkv.T).split(c, dim=-1)
    attn = torch.softmax(torch.einsum("nsc,ntc->nst", q, k) / c**0.5, dim=-1)
    want = torch.einsum("nst,ntc->nsc", attn, v) @ wp.T + bp
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_temporal_transformer_is_zero_initialised_identity():
    """GTR's temporal block starts as the identity (every parameter zero), as the paper's zero init."""
    layer = TemporalTransformer(32)
    assert all(float(p.detach().abs().max()) == 0.0 for p in layer.parameters())
    x = torch.randn(2 * 3, 32, 4, 5)
    assert torch.equal(layer(x, 3), x)


def test_temporal_transformer_mixes_only_along_time_and_is_order_equivariant():
    torch.manual_seed(2)
    layer = TemporalTransformer(16, zero_init=False)
    s, h, w = 3, 4, 5
    x = torch.randn(s, 16, h, w)
    y = layer(x, s)
    # pixel independence: changing one pixel of one step changes only that pixel (all steps)
    x2 = x.clone()
    x2[1, :, 2, 3] += 1.0
    d = (layer(x2, s) - y).abs().amax(dim=(0, 1))
    assert d[2, 3] > 1e-3 and float(d.sum() - d[2, 3]) == 0.0
    # no positional term: permuting the steps permutes the outputs
    perm = torch.tensor([2, 0, 1])
    torch.testing.assert_close(layer(x[perm], s), y[perm], rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------- ISC
def test_isc_with_one_frame_is_the_plain_twins_encoder():
    torch.manual_seed(3)
    isc = ISCTwinsEncoder().eval()
    plain = TwinsEncoder().eval()
    # same weights: ISC has every Twins entry except the never-used final norm
    isc.load_state_dict({k: v for k, v in plain.state_dict().items() if not k.startswith("svt.norm.")})
    x = torch.rand(2, 3, 32, 48) * 2 - 1
    with torch.no_grad():
        a = isc(x[:, None])  # (B, 1, 256, 4, 6)
        b = plain(x)
    assert a.shape == (2, 1, 256, 4, 6)
    torch.testing.assert_close(a[:, 0], b, rtol=1e-5, atol=1e-5)


def test_isc_features_of_a_frame_depend_on_the_other_frames():
    """Stacking along height lets attention cross frames: frame 0's features change with frame 2."""
    torch.manual_seed(4)
    isc = ISCTwinsEncoder().eval()
    x = torch.rand(1, 3, 3, 32, 40) * 2 - 1
    x2 = x.clone()
    x2[:, 2] = torch.rand(1, 3, 32, 40) * 2 - 1
    with torch.no_grad():
        f, s1 = isc(x, return_stages=True)
        g = isc(x2)
        separate = torch.cat([isc(x[:, t : t + 1]) for t in range(3)], dim=1)
    assert f.shape == (1, 3, 256, 4, 5) and s1.shape == (1, 3, 128, 8, 10)
    assert (f[:, 0] - g[:, 0]).abs().max() > 1e-3
    assert (f - separate).abs().max() > 1e-3  # ISC is not per-frame encoding


# ------------------------------------------------------------------------------------- update block
def test_joint_flow_head_couples_the_pairs_and_masks_stay_per_pair():
    torch.manual_seed(5)
    ub = StreamFlowUpdateBlock(steps=3).eval()
    n, h, w = 3, 6, 7
    net, inp = torch.randn(n, 128, h, w), torch.randn(n, 128, h, w)
    corr, flow = torch.randn(n, 324, h, w), torch.randn(n, 2, h, w)
    attention = torch.softmax(torch.randn(n, 1, h * w, h * w), dim=-1)
    with torch.no_grad():
        net1, mask, delta = ub(net, inp, corr, flow, attention)
        net_b = net.clone()
        net_b[2] += 0.5  # only pair 2's hidden state changes
        net2, mask2, delta2 = ub(net_b, inp, corr, flow, attention)
    assert net1.shape == (3, 128, h, w) and mask.shape == (1, 3, 576, h, w) and delta.shape == (1, 3, 2, h, w)
    assert (delta2[:, 0] - delta[:, 0]).abs().max() > 1e-4  # GTR: one head regresses all pairs
    assert torch.equal(mask2[:, 0], mask[:, 0]) and torch.equal(net2[0], net1[0])  # per-pair parts untouched


# --------------------------------------------------------------------------------------- checkpoint
@pytest.fixture(scope="module")
def two_models():
    torch.manual_seed(6)
    return StreamFlow(), StreamFlow()


def _official(model: StreamFlow) -> dict:
    sd = OrderedDict(("module." + k, v.clone()) for k, v in model.state_dict().items())
    for k in UNUSED_KEYS:
        sd["module." + k] = torch.zeros(1024)
    return {"model": sd, "optimizer": {"state": {}}, "total_steps": torch.tensor(3)}


def test_official_layout_loads_strictly(two_models):
    src, dst = two_models
    report = load_official_checkpoint(dst, _official(src))
    assert report.wrappers == ["model"] and report.prefixes == ["module."]
    assert sorted(report.unused) == sorted(UNUSED_KEYS)
    assert report.loaded == len(src.state_dict())
    for (k, a), (k2, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda sd: sd.pop("module.update_block.flow_head.ffn2.2.weight"), "missing keys"),
        (lambda sd: sd.__setitem__("module.update_block.temporal.extra", torch.zeros(3)), "unexpected keys"),
        (lambda sd: sd.__setitem__("module.att.to_qk.weight", torch.zeros(256, 128, 3, 3)), "shape mismatches"),
    ],
    ids=["missing", "unexpected", "shape"],
)
def test_checkpoint_mismatch_is_refused_with_the_key_named(two_models, edit, message):
    src, dst = two_models
    ck = _official(src)
    edit(ck["model"])
    with pytest.raises(CheckpointError, match=message) as info:
        load_official_checkpoint(dst, ck)
    assert "StreamFlow" in str(info.value)


# ------------------------------------------------------------------------------------------ inputs
@pytest.mark.parametrize(
    "shape, flow_init, message",
    [
        ((1, 3, 3, 128, 128), None, "built for T=4"),
        ((1, 4, 3, 132, 128), None, "multiples of 8"),
        ((1, 4, 3, 120, 128), None, ">= 128"),
        ((1, 4, 3, 128, 128), (1, 3, 2, 8, 16), "flow_init"),
    ],
)
def test_forward_rejects_bad_inputs(two_models, shape, flow_init, message):
    model = two_models[0]
    init = None if flow_init is None else torch.zeros(flow_init)
    with pytest.raises(ShapeError, match=message):
        model(torch.zeros(shape), iters=1, flow_init=init)


# ------------------------------------------------------------------------------------------ method
class _EchoGroup(nn.Module):
    """Stands in for StreamFlow: pair p of a group gets flow (value of frame p, value of frame p+1)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, frames, iters=None, flow_init=None, all_iterations=False):
        self.calls.append(frames[0, :, 0, 0, 0].tolist())
        flow = torch.stack([frames[:, :-1, 0], frames[:, 1:, 0]], dim=2)  # (B, S, 2, H, W)
        return StreamFlowOutput(flow=flow, flow_low=flow[..., ::8, ::8])


@pytest.mark.parametrize(
    "num_frames, groups",
    [
        (8, [[0, 1, 2, 3], [3, 4, 5, 6], [4, 5, 6, 7]]),  # last group aligned to the end
        (10, [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]),  # 3 passes for 9 pairs
        (4, [[0, 1, 2, 3]]),
        (2, [[0, 1, 1, 1]]),  # shorter than a group: last frame repeated, extra pairs dropped
    ],
)
def test_method_stitches_sim_groups_into_one_flow_per_pair(num_frames, groups):
    fake = _EchoGroup()
    method = NetworkFlowMethod(streamflow_spec(), fake, device="cpu")
    frames = torch.arange(num_frames, dtype=torch.float32).view(1, num_frames, 1, 1, 1).expand(1, num_frames, 3, 16, 24)
    out = method(frames)
    assert out.flow.shape == (1, num_frames - 1, 2, 16, 24)
    for p in range(num_frames - 1):  # pair p comes from frames p and p+1
        assert torch.all(out.flow[0, p, 0] == p) and torch.all(out.flow[0, p, 1] == p + 1)
    assert fake.calls == groups


def test_streamflow_method_registration_and_defaults():
    with pytest.raises(CheckpointError, match="littlespray/StreamFlow"):
        get_optical_flow_method("streamflow")
    m = create_streamflow_method(weights="random", device="cpu")
    assert m.name == "streamflow" and m.clip_length == 4 and m.iters == DEFAULT_ITERS == 15
    assert isinstance(m.model, StreamFlow) and m.model.frames == 4
    assert isinstance(create_model("streamflow"), StreamFlow)
