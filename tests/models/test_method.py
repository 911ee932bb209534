"""The network -> method adapter: padding, cropping, window plans, stitching, corr switch, refusal."""

from __future__ import annotations

import pytest
import torch

from motionflow.errors import CheckpointError, ShapeError
from motionflow.models.method import (
    NetworkFlowMethod,
    NetworkSpec,
    WindowFlows,
    crop_flow,
    overlapping_groups,
    pad_frames,
    padding_for,
    pairwise_windows,
    sliding_windows,
    window_indices,
)
from motionflow.registry import get_optical_flow_method


# ---------------------------------------------------------------------------------------- padding
def test_padding_to_stride_and_min_size():
    assert padding_for(436, 1024) == (0, 0, 2, 2)  # Sintel: 436 -> 440 (InputPadder sintel mode)
    assert padding_for(375, 1242) == (3, 3, 0, 1)  # KITTI: 375 -> 376, 1242 -> 1248
    assert padding_for(100, 130) == (3, 3, 14, 14)  # 100 -> 128 (min size), 130 -> 136
    assert padding_for(128, 136) == (0, 0, 0, 0)
    assert padding_for(5, 7) == (60, 61, 61, 62)


def test_pad_then_crop_is_exact():
    x = torch.arange(2 * 3 * 3 * 5 * 7, dtype=torch.float32).reshape(2, 3, 3, 5, 7)
    pad = padding_for(5, 7)
    y = pad_frames(x, pad)
    assert y.shape == (2, 3, 3, 128, 128)
    assert torch.equal(crop_flow(y, pad), x)
    assert torch.equal(y[0, 0, 0, 0, 0], x[0, 0, 0, 0, 0])  # replicate padding copies the corner
    assert torch.equal(y[..., -1, -1], x[..., -1, -1])


# ---------------------------------------------------------------------------------------- windows
def test_window_plans():
    assert pairwise_windows(4) == [(0, 2), (1, 2), (2, 2)]
    assert sliding_windows(4, 3) == [(-1, 3), (0, 3), (1, 3), (2, 3)]
    assert sliding_windows(8, 5) == [(-1, 5), (2, 5), (4, 5)]
    assert sliding_windows(2, 5) == [(-1, 5)]
    assert overlapping_groups(8, 4) == [(0, 4), (3, 4), (4, 4)]
    assert overlapping_groups(10, 4) == [(0, 4), (3, 4), (6, 4)]
    assert overlapping_groups(3, 4) == [(0, 4)]
    assert window_indices(-1, 5, 3) == [0, 0, 1, 2, 2]


class _IndexNet(torch.nn.Module):
    """Fake network: frames are constant images with value 10 * frame index; the 'flow' from window
    frame a to b is (value_b - value_a, x coordinate of the padded frame). Records what it saw."""

    def __init__(self):
        super().__init__()
        self.corr_on_demand = False
        self.seen = []

    def flow(self, fa, fb):
        b, _, h, w = fa.shape
        x = torch.arange(w, dtype=torch.float32).expand(b, h, w)
        d = (fb - fa)[:, 0]
        return torch.stack([d, x], dim=1)


def _centre_runner(model, frames, iters, return_iterations):
    """Like VideoFlow: flows of the inner frames to both neighbours only."""
    model.seen.append((frames.shape, model.corr_on_demand, frames[:, :, 0, 0, 0].tolist()))
    n = frames.shape[1]
    fwd = {c: model.flow(frames[:, c], frames[:, c + 1]) for c in range(1, n - 1)}
    bwd = {c - 1: model.flow(frames[:, c], frames[:, c - 1]) for c in range(1, n - 1)}
    return WindowFlows(forward=fwd, backward=bwd)


def _group_runner(model, frames, iters, return_iterations):
    """Like StreamFlow: every pair of the group, forward only; iterations = [flow / 2, flow]."""
    model.seen.append((frames.shape, model.corr_on_demand, frames[:, :, 0, 0, 0].tolist()))
    fwd = {p: model.flow(frames[:, p], frames[:, p + 1]) for p in range(frames.shape[1] - 1)}
    its = {p: [f / 2, f] for p, f in fwd.items()}
    return WindowFlows(forward=fwd, iterations=its)


def _clip(t, h=20, w=30, b=2):
    vals = 10.0 * torch.arange(t, dtype=torch.float32) ** 2  # pair t -> t+1 differs by 10 (2t + 1)
    return vals.view(1, t, 1, 1, 1).expand(b, t, 3, h, w).clone()


@pytest.mark.parametrize("t", [2, 3, 5, 8])
def test_sliding_windows_stitch_inner_flows_and_drop_edge_repeats(t):
    spec = NetworkSpec("fake-mof", 5, lambda n: sliding_windows(n, 5), _centre_runner, default_iters=1)
    net = _IndexNet()
    pred = NetworkFlowMethod(spec, net, device="cpu")(_clip(t))
    assert pred.flow.shape == (2, t - 1, 2, 20, 30) and pred.backward.shape == (2, t - 1, 2, 20, 30)
    want = torch.tensor([10.0 * (2 * p + 1) for p in range(t - 1)])
    # a flow taken from a repeated edge frame would be 0 here
    assert torch.equal(pred.flow[:, :, 0].amin(dim=(0, 2, 3)), want)
    assert torch.equal(pred.flow[:, :, 0].amax(dim=(0, 2, 3)), want)
    assert torch.equal(pred.backward[:, :, 0].amax(dim=(0, 2, 3)), -want)
    # x channel: coordinate of the padded frame (30 -> 128: left pad 49), cropped back exactly
    pad = padding_for(20, 30)
    assert pad == (49, 49, 54, 54)
    assert torch.equal(pred.flow[0, 0, 1, 0], torch.arange(30, dtype=torch.float32) + 49)
    assert pred.meta["padding"] == pad
    for shape, _, _ in net.seen:
        assert tuple(shape) == (2, 5, 3, 128, 128)


def test_groups_overlapping_by_one_with_iterations():
    spec = NetworkSpec("fake-sf", 4, lambda n: overlapping_groups(n, 4), _group_runner, default_iters=1)
    net = _IndexNet()
    method = NetworkFlowMethod(spec, net, device="cpu", return_iterations=True)
    pred = method(_clip(8, h=128, w=136, b=1))
    assert [s[2][0] for s in net.seen] == [[0, 10, 40, 90], [90, 160, 250, 360], [160, 250, 360, 490]]
    want = torch.tensor([10.0 * (2 * p + 1) for p in range(7)])
    assert torch.equal(pred.flow[0, :, 0, 5, 5], want)
    assert pred.backward is None
    assert len(pred.iterations) == 2 and torch.equal(pred.iterations[0], pred.flow / 2)
    # a 2-frame clip fills the group by repeating the last frame and keeps only the real pair
    net.seen.clear()
    pred = method(_clip(2, h=128, w=136, b=1))
    assert net.seen[0][2][0] == [0, 10, 10, 10] and pred.flow.shape == (1, 1, 2, 128, 136)
    assert torch.equal(pred.flow[0, 0, 0], torch.full((128, 136), 10.0))


def test_on_demand_switch_by_pixel_count():
    spec = NetworkSpec("fake", 2, pairwise_windows, _group_runner, default_iters=1)
    net = _IndexNet()
    m = NetworkFlowMethod(spec, net, device="cpu", on_demand_pixels=128 * 128)
    assert m(_clip(2, 128, 128, 1)).meta["on_demand_corr"] is False
    assert m(_clip(2, 128, 129, 1)).meta["on_demand_corr"] is True  # padded to 128 x 136
    assert [s[1] for s in net.seen] == [False, True]
    assert net.corr_on_demand is False  # restored after the call
    assert NetworkFlowMethod(spec, net, device="cpu", on_demand_pixels=None).uses_on_demand(4000, 4000) is False


def test_on_demand_threshold_scales_with_the_number_of_correlation_volumes():
    """k volumes per window switch at on_demand_pixels / sqrt(k): the same total volume as one at the threshold."""
    spec = NetworkSpec("fake", 2, pairwise_windows, _group_runner, default_iters=1, correlation_volumes=4)
    m = NetworkFlowMethod(spec, _IndexNet(), device="cpu", on_demand_pixels=1000)
    assert m.uses_on_demand(20, 25) is False  # 500 px x sqrt(4) = 1000, not above
    assert m.uses_on_demand(1, 501) is True
    from motionflow.registry import get_optical_flow_method

    volumes = {n: get_optical_flow_method(n, weights="random").spec.correlation_volumes
               for n in ("raft", "videoflow-bof", "videoflow-mof", "streamflow")}
    assert volumes == {"raft": 1, "videoflow-bof": 2, "videoflow-mof": 6, "streamflow": 3}
    # 720p MOF: six 0.98 GB volumes would be built all-pairs with the plain 1 MP threshold
    mof = get_optical_flow_method("videoflow-mof", weights="random")
    assert mof.uses_on_demand(720, 1280) and not mof.uses_on_demand(400, 1000)


def test_bad_frames_are_refused():
    spec = NetworkSpec("fake", 2, pairwise_windows, _group_runner, default_iters=1)
    m = NetworkFlowMethod(spec, _IndexNet(), device="cpu")
    with pytest.raises(ShapeError, match=r"\(B, T>=2, 3, H, W\), found \(1, 1, 3, 8, 8\)"):
        m(torch.zeros(1, 1, 3, 8, 8))
    with pytest.raises(ShapeError, match="found \\(3, 8, 8\\)"):
        m(torch.zeros(3, 8, 8))


# ---------------------------------------------------------------------------------------- RAFT method
def test_raft_method_refuses_without_weights():
    with pytest.raises(CheckpointError, match=r"princeton-vl/RAFT README.*download_models.sh") as exc:
        get_optical_flow_method("raft")
    assert "weights='random'" in str(exc.value) and "checkpoint=PATH" in str(exc.value)


def test_raft_method_pads_small_frames_and_matches_the_network():
    method = get_optical_flow_method("raft", weights="random", iters=1, device="cpu")
    assert method.clip_length == 2 and method.name == "raft"
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(1, 2, 3, 60, 90, generator=g) * 255  # below 128 px: padded up
    pred = method(frames)
    assert pred.flow.shape == (1, 1, 2, 60, 90) and torch.isfinite(pred.flow).all()
    pad = padding_for(60, 90)
    padded = pad_frames(frames, pad)
    with torch.no_grad():
        ref = method.model(padded[:, 0], padded[:, 1], iters=1)[-1]
    torch.testing.assert_close(pred.flow[:, 0], crop_flow(ref, pad), rtol=0, atol=1e-5)
    assert pred.backward is None and pred.meta["on_demand_corr"] is False


def test_raft_method_loads_a_dataparallel_file_and_checks_options(tmp_path):
    from motionflow.errors import UnknownNameError
    from motionflow.models import create_model
    from motionflow.models.raft import RAFT_ALIASES, create_raft_method

    torch.manual_seed(3)
    src = create_model("raft").state_dict()
    ckpt = {"module." + k: v for k, v in src.items()}
    ckpt.update({"module." + a: src[c].clone() for a, c in RAFT_ALIASES.items()})
    path = tmp_path / "raft-things.pth"
    torch.save(ckpt, path)
    method = create_raft_method(checkpoint=path, iters=7, device="cpu")
    assert method.iters == 7 and method.precision == "fp32"
    for k, v in method.model.state_dict().items():
        assert torch.equal(v, src[k]), k
    assert create_raft_method(weights="random", device="cpu").iters == 32  # official Sintel evaluation
    with pytest.raises(CheckpointError, match="either checkpoint=... or weights='random'"):
        create_raft_method(checkpoint=path, weights="random")
    with pytest.raises(UnknownNameError, match="weights must be None or 'random', found 'imagenet'"):
        create_raft_method(weights="imagenet")
    with pytest.raises(UnknownNameError, match="precision must be one of fp32, fp16, bf16; found 'fp8'"):
        create_raft_method(weights="random", precision="fp8")
    with pytest.raises(UnknownNameError, match="unknown network 'flownet'; valid choices: raft, streamflow"):
        create_model("flownet")
