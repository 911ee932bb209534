"""Training forwards: which ground truth each network's predicted flows are matched with."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from motionflow.errors import ShapeError, UnknownNameError
from motionflow.models import create_model
from motionflow.models.videoflow import VideoFlowOutput
from motionflow.train.networks import TRAINERS, freeze_batchnorm, get_trainer, select_targets


def _clip(b=2, t=3, h=64, w=64):
    torch.manual_seed(0)
    return torch.rand(b, t, 3, h, w) * 255


def test_raft_pairs_of_a_clip_run_as_one_batch():
    model = create_model("raft", corr_levels=2, corr_radius=3)
    frames = _clip(b=2, t=3)
    with torch.no_grad():
        pred = get_trainer("raft").forward(model, frames, 2)
        assert pred.targets == [("forward", 0), ("forward", 1)]
        assert len(pred.iterations) == 2 and pred.iterations[-1].shape == (2, 2, 2, 64, 64)
        for b in range(2):
            for k in range(2):
                ref = model(frames[b : b + 1, k], frames[b : b + 1, k + 1], iters=2)[-1]
                assert torch.allclose(pred.iterations[-1][b, k], ref[0], atol=1e-4)


class _StubVideoFlow(nn.Module):
    """Returns flows whose value is their index on axis 1 (the official output layout)."""

    def __init__(self, flows_of):
        super().__init__()
        self.flows_of = flows_of

    def forward(self, images, iters=None):
        b, n, _, h, w = images.shape
        f = self.flows_of(n)
        flows = torch.arange(f, dtype=torch.float32).view(1, f, 1, 1, 1).expand(b, f, 2, h, w)
        return VideoFlowOutput([flows * 0.5, flows], None)


def test_videoflow_outputs_are_matched_with_their_pairs():
    b, t, h, w = 1, 5, 8, 8
    gt = torch.arange(t - 1, dtype=torch.float32).view(1, t - 1, 1, 1, 1).expand(b, t - 1, 2, h, w)  # pair k has value k
    back = 10 + gt  # backward of pair k has value 10 + k
    valid = torch.ones(b, t - 1, h, w, dtype=torch.bool)

    mof = get_trainer("videoflow-mof").forward(_StubVideoFlow(lambda n: 2 * (n - 2)), torch.zeros(b, t, 3, h, w), 2)
    # official MOF layout: forward flows of frames 1..N-2, then their backward flows (frame k -> k-1)
    assert mof.targets == [("forward", 1), ("forward", 2), ("forward", 3), ("backward", 0), ("backward", 1), ("backward", 2)]
    keep, g, v = select_targets(mof.targets, gt, valid)
    assert keep == [0, 1, 2] and torch.equal(g[0, :, 0, 0, 0], torch.tensor([1.0, 2.0, 3.0]))
    keep, g, v = select_targets(mof.targets, gt, valid, back, valid)
    assert keep == list(range(6)) and torch.equal(g[0, :, 0, 0, 0], torch.tensor([1.0, 2.0, 3.0, 10.0, 11.0, 12.0]))

    bof = get_trainer("videoflow-bof").forward(_StubVideoFlow(lambda n: 2), torch.zeros(b, 3, 3, h, w), 2)
    assert bof.targets == [("forward", 1), ("backward", 0)]  # centre -> next, centre -> previous
    keep, g, _ = select_targets(bof.targets, gt[:, :2], valid[:, :2], back[:, :2], valid[:, :2])
    assert keep == [0, 1] and torch.equal(g[0, :, 0, 0, 0], torch.tensor([1.0, 10.0]))


def test_streamflow_supervises_every_pair_and_sums_them():
    t = get_trainer("streamflow")
    assert (t.default_frames, t.flow_reduction) == (4, "sum")
    assert TRAINERS["videoflow-mof"].flow_reduction == TRAINERS["raft"].flow_reduction == "mean"


def test_clip_length_checks_and_unknown_names():
    with pytest.raises(ShapeError, match="videoflow-bof trains on clips of T=3 frames"):
        get_trainer("videoflow-bof").check_frames(None, 5)
    with pytest.raises(ShapeError, match="T >= 3"):
        get_trainer("videoflow-mof").check_frames(None, 2)

    class _SF:
        frames = 4

    with pytest.raises(ShapeError, match="built for SIM groups of T=4 frames, found T=3"):
        get_trainer("streamflow").check_frames(_SF(), 3)
    with pytest.raises(UnknownNameError, match="unknown network 'pwc'"):
        get_trainer("pwc")


def test_freeze_batchnorm_keeps_running_statistics():
    model = create_model("raft", corr_levels=2, corr_radius=3).train()
    freeze_batchnorm(model)
    bn = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bn and all(not m.training for m in bn)
    before = [m.running_mean.clone() for m in bn]
    with torch.no_grad():
        model(_clip(1, 2)[:, 0], _clip(1, 2)[:, 1], iters=1)
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, bn))
