"""Unit tests of the VideoFlow pieces: Twins attention, GMA, MOP, checkpoint loading, method windows."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from motionflow.errors import CheckpointError, ShapeError
from motionflow.models.blocks.gma import ContextAttention, MotionAggregation
from motionflow.models.blocks.twins import GlobalSubSampleAttn, LocallyGroupedAttn, TwinsEncoder
from motionflow.models.blocks.videoflow_mop import propagate_hidden_state
from motionflow.models.method import crop_flow, pad_frames, padding_for
from motionflow.models.videoflow import (
    UNUSED_KEYS,
    BOFNet,
    MOFNet,
    create_bof_method,
    create_mof_method,
    load_videoflow_checkpoint,
)


def _softmax_attention(q, k, v):
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) @ v


@torch.no_grad()
def test_locally_grouped_attention_matches_per_window_loop():
    torch.manual_seed(1)
    dim, heads, ws, h, w = 8, 2, 3, 5, 7  # neither side a multiple of ws: padding at bottom/right
    attn = LocallyGroupedAttn(dim, heads, ws).double()
    x = torch.randn(2, h * w, dim, dtype=torch.float64)
    got = attn(x, (h, w))

    grid = F.pad(x.view(2, h, w, dim), (0, 0, 0, 9 - w, 0, 6 - h))  # zero tokens join the attention
    out = torch.zeros_like(grid)
    for i in range(0, 6, ws):
        for j in range(0, 9, ws):
            tok = grid[:, i : i + ws, j : j + ws].reshape(2, ws * ws, dim)
            q, k, v = attn.qkv(tok).view(2, ws * ws, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
            o = _softmax_attention(q, k, v).transpose(1, 2).reshape(2, ws, ws, dim)
            out[:, i : i + ws, j : j + ws] = o
    want = attn.proj(out[:, :h, :w].reshape(2, h * w, dim))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@torch.no_grad()
def test_global_subsample_attention_matches_explicit_formula():
    torch.manual_seed(2)
    dim, heads, sr, h, w = 8, 2, 2, 5, 6  # 5 // 2 = 2 rows of keys (floor)
    attn = GlobalSubSampleAttn(dim, heads, sr).double()
    x = torch.randn(1, h * w, dim, dtype=torch.float64)
    got = attn(x, (h, w))

    fmap = x.transpose(1, 2).reshape(1, dim, h, w)
    sub = F.conv2d(fmap, attn.sr.weight, attn.sr.bias, stride=sr)
    assert sub.shape[-2:] == (2, 3)
    kv_in = F.layer_norm(sub.flatten(2).transpose(1, 2), (dim,), attn.norm.weight, attn.norm.bias, eps=1e-5)
    q = attn.q(x).view(1, h * w, heads, dim // heads).transpose(1, 2)
    k, v = attn.kv(kv_in).view(1, 6, 2, heads, dim // heads).permute(2, 0, 3, 1, 4)
    want = attn.proj(_softmax_attention(q, k, v).transpose(1, 2).reshape(1, h * w, dim))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@torch.no_grad()
def test_twins_encoder_is_truncated_to_two_stages():
    enc = TwinsEncoder().eval()
    out = enc(torch.zeros(2, 3, 32, 40))
    assert out.shape == (2, 256, 4, 5)
    names = {k.split(".")[1] for k in enc.state_dict()}
    assert names == {"patch_embeds", "blocks", "pos_block"}  # no head, no stages 3-4, no final norm
    assert {k.split(".")[2] for k in enc.state_dict() if k.startswith("svt.blocks.")} == {"0", "1"}


@torch.no_grad()
def test_gma_attention_rows_and_aggregation():
    torch.manual_seed(3)
    att = ContextAttention(dim=6, heads=2, dim_head=4)
    ctx = torch.randn(1, 6, 3, 4)
    a = att(ctx)
    assert a.shape == (1, 2, 12, 12)
    torch.testing.assert_close(a.sum(-1), torch.ones(1, 2, 12))
    q, k = att.to_qk(ctx).chunk(2, dim=1)
    want = torch.einsum("bhdi,bhdj->bhij", q.view(1, 2, 4, 12) * 0.5, k.view(1, 2, 4, 12)).softmax(-1)
    torch.testing.assert_close(a, want)

    agg = MotionAggregation(dim=6, heads=2, dim_head=4)  # 8 != 6 -> a 1x1 projection back to 6
    motion = torch.randn(1, 6, 3, 4)
    assert torch.equal(agg(a, motion), motion)  # gamma starts at 0
    agg.gamma.data.fill_(0.5)
    v = agg.to_v(motion).view(1, 2, 4, 12)
    out = torch.einsum("bhij,bhdj->bhdi", a, v).reshape(1, 8, 3, 4)
    torch.testing.assert_close(agg(a, motion), motion + 0.5 * agg.project(out))


def test_motion_propagation_gathers_neighbour_states_along_the_flow():
    torch.manual_seed(4)
    hidden = torch.randn(1, 3, 5, 4, 6)  # 3 inner frames, 5 channels
    ys, xs = torch.meshgrid(torch.arange(4.0), torch.arange(6.0), indexing="ij")
    grid = torch.stack([xs, ys], 0).expand(3, 2, 4, 6)  # pixel coordinates, x first
    nxt, prv = propagate_hidden_state(hidden, grid, grid)  # zero flow: plain copies
    torch.testing.assert_close(nxt[:2], hidden[0, 1:])
    assert torch.equal(nxt[2], torch.zeros(5, 4, 6))  # no frame after the last inner frame
    torch.testing.assert_close(prv[1:], hidden[0, :2])
    assert torch.equal(prv[0], torch.zeros(5, 4, 6))

    shifted = grid + torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)  # flow of +1 px in x
    nxt, _ = propagate_hidden_state(hidden, shifted, grid)
    torch.testing.assert_close(nxt[0, :, :, :5], hidden[0, 1, :, :, 1:])
    assert torch.equal(nxt[0, :, :, 5], torch.zeros(5, 4))  # sampled outside: zero padding


@pytest.fixture(scope="module")
def bof_state():
    torch.manual_seed(5)
    sd = {"module." + k: v for k, v in BOFNet().state_dict().items()}
    return sd


def test_checkpoint_loads_strictly_and_accepts_unused_keys_by_name(bof_state):
    sd = dict(bof_state)
    sd["module.att.pos_emb.rel_height.weight"] = torch.zeros(319, 128)
    sd["module.cnet.svt.norm.weight"] = torch.zeros(1024)
    model = BOFNet()
    report = load_videoflow_checkpoint(model, sd)
    assert report.prefixes == ["module."]
    assert sorted(report.unused) == ["att.pos_emb.rel_height.weight", "cnet.svt.norm.weight"]
    assert torch.equal(model.update_block.mask[2].weight, bof_state["module.update_block.mask.2.weight"])
    assert "update_block.encoder.velocity_update_block.mlp.0.weight" in UNUSED_KEYS["videoflow-mof"]


def test_checkpoint_errors_name_the_offending_keys(bof_state):
    missing = {k: v for k, v in bof_state.items() if k != "module.att.to_qk.weight"}
    with pytest.raises(CheckpointError, match=r"missing keys \(1\).*att\.to_qk\.weight"):
        load_videoflow_checkpoint(BOFNet(), missing)
    extra = dict(bof_state, **{"module.update_block.extra": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\).*update_block\.extra"):
        load_videoflow_checkpoint(BOFNet(), extra)
    # a MOF file into BOF: the fused motion conv has 400 input channels there, not 256
    mof = {"module." + k: v for k, v in MOFNet().state_dict().items()}
    with pytest.raises(CheckpointError, match=r"update_block\.encoder\.conv\.conv_list\.0\.weight: checkpoint \(400, 1, 1, 1\)"):
        load_videoflow_checkpoint(BOFNet(), mof)


def test_network_input_errors():
    model = BOFNet(iters=1)
    with pytest.raises(ShapeError, match="expected 3 frames"):
        model(torch.zeros(1, 4, 3, 128, 128))
    with pytest.raises(ShapeError, match="multiples of 8"):
        model(torch.zeros(1, 3, 3, 130, 128))
    with pytest.raises(ShapeError, match="positive number of iterations"):
        model(torch.zeros(1, 3, 3, 128, 128), iters=0)
    with pytest.raises(ShapeError, match="at least 3 frames"):
        MOFNet(iters=1)(torch.zeros(1, 2, 3, 128, 128))


def test_methods_refuse_to_run_without_weights():
    with pytest.raises(CheckpointError, match="BOF_things.pth"):
        create_bof_method()
    with pytest.raises(CheckpointError, match="MOF_things.pth"):
        create_mof_method()


def _clip(t, h=64, w=72):
    torch.manual_seed(6)
    return torch.rand(1, t, 3, h, w) * 255


def _direct(model, clip, index):
    """The network on the frames ``index`` of the adapter-padded clip, cropped back."""
    pad = padding_for(clip.shape[-2], clip.shape[-1])
    with torch.no_grad():
        out = model(pad_frames(clip, pad)[:, index], iters=1)
    return crop_flow(out.flow, pad)


def test_bof_method_windows_and_edges():
    torch.manual_seed(7)
    method = create_bof_method(weights="random", iters=1, device="cpu")
    assert method.clip_length == 8
    clip = _clip(3)
    pred = method(clip)
    assert pred.flow.shape == (1, 2, 2, 64, 72) and pred.backward.shape == (1, 2, 2, 64, 72)
    first = _direct(method.model, clip, [0, 0, 1])  # clip start: the first frame repeated
    last = _direct(method.model, clip, [1, 2, 2])  # clip end: the last frame repeated
    torch.testing.assert_close(pred.flow[:, 0], first[:, 0], rtol=0, atol=1e-5)  # centre 0 -> next
    torch.testing.assert_close(pred.backward[:, 1], last[:, 1], rtol=0, atol=1e-5)  # centre 2 -> previous
    assert not torch.allclose(pred.flow[:, 1], first[:, 0])  # pair 1 comes from its own window


def test_mof_method_windows_keep_inner_flows():
    torch.manual_seed(8)
    method = create_mof_method(weights="random", iters=1, device="cpu")
    assert method.clip_length == 9
    clip = _clip(4)
    pred = method(clip)
    assert pred.flow.shape == (1, 3, 2, 64, 72) and pred.backward.shape == (1, 3, 2, 64, 72)
    first = _direct(method.model, clip, [0, 0, 1, 2, 3])  # inner frames 0, 1, 2
    last = _direct(method.model, clip, [0, 1, 2, 3, 3])  # inner frames 1, 2, 3
    for pair in range(3):
        torch.testing.assert_close(pred.flow[:, pair], first[:, pair], rtol=0, atol=1e-5)
    torch.testing.assert_close(pred.backward[:, 0], first[:, 3 + 1], rtol=0, atol=1e-5)  # frame 1 -> 0
    torch.testing.assert_close(pred.backward[:, 2], last[:, 3 + 2], rtol=0, atol=1e-5)  # frame 3 -> 2


@torch.no_grad()
def test_on_demand_correlation_switch_gives_the_same_lookup():
    from motionflow.ops.correlation import CorrPyramid, OnDemandCorrPyramid

    torch.manual_seed(9)
    f1, f2 = torch.randn(2, 1, 16, 16, 17).unbind(0)
    coords = torch.rand(1, 2, 16, 17) * 16
    model = BOFNet(iters=1)
    assert isinstance(model.correlation(f1, f2), CorrPyramid)
    model.corr_on_demand = True  # what the method adapter sets above ~1 MP
    pyr = model.correlation(f1, f2)
    assert isinstance(pyr, OnDemandCorrPyramid)
    torch.testing.assert_close(pyr(coords), CorrPyramid(f1, f2)(coords), rtol=0, atol=1e-5)


def test_video_engine_gives_bof_windows_their_real_neighbours():
    """Through estimate_flow (clips of ``clip_length`` overlapping by one), a pair inside a clip comes
    from the window on the real frames; only a clip's first frame is repeated."""
    from motionflow.inference import estimate_flow

    torch.manual_seed(7)
    method = create_bof_method(weights="random", iters=1, device="cpu")
    clip = _clip(5)
    pred = estimate_flow(clip, method=method)
    assert pred.meta["clips"] == [(0, 5)]
    for t in (1, 2, 3):
        direct = _direct(method.model, clip, [t - 1, t, t + 1])
        torch.testing.assert_close(pred.flow[:, t], direct[:, 0], rtol=0, atol=1e-5)  # centre t -> t+1
