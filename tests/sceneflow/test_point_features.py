"""The FLOT / SCOOP point-feature net: checkpoint layouts, strict key map, refusals, SetConv by hand."""

from __future__ import annotations

import argparse
import os
from collections import OrderedDict

import numpy as np
import pytest
import torch

from motionflow.errors import CheckpointError, ShapeError, UnknownNameError
from motionflow.sceneflow.flot import FLOTNet, load_flot
from motionflow.sceneflow.point_features import (
    PointFeatureNet,
    SetConv,
    edge_offsets,
    load_point_features,
    point_graph,
    read_point_feature_checkpoint,
)


@pytest.fixture(scope="module")
def flot_2048(sample_data):
    return sample_data / "flot_pretrained" / "model_2048.tar"


def test_flot_file_loads_all_58_keys_and_the_29_feature_keys(flot_2048):
    ckpt = read_point_feature_checkpoint(flot_2048)
    assert (ckpt.layout, ckpt.nb_iter, ckpt.nb_neigh_cross_recon, len(ckpt.state_dict)) == ("flot", 1, None, 58)
    feats = load_point_features(PointFeatureNet(), ckpt)  # the refinement keys are dropped by name
    assert list(feats.state_dict()) == list(ckpt.state_dict)[:29]
    assert sum(p.numel() for p in feats.parameters()) == 55_362
    for k, v in feats.state_dict().items():
        assert torch.equal(v, ckpt.state_dict[k]), k
    flot = load_flot(flot_2048)
    assert list(flot.state_dict()) == list(ckpt.state_dict)
    # the released 2048 model: eps = exp(-24.1) + 0.03, gamma = exp(-3.51) (SPEC "Checkpoint layouts")
    assert abs(float(flot.transport_eps()) - 0.0300) < 1e-4 and abs(float(flot.transport_gamma()) - 0.02978) < 1e-4


def test_plain_and_module_prefixed_state_dicts_load(tmp_path):
    net = PointFeatureNet()
    torch.nn.init.normal_(net.feat_conv3.fc3.weight)
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, tmp_path / "model.pth")
    ckpt = read_point_feature_checkpoint(tmp_path / "model.pth")
    assert ckpt.layout == "state_dict" and ckpt.nb_neigh_cross_recon == 64
    other = load_point_features(PointFeatureNet(), ckpt)
    assert torch.equal(other.feat_conv3.fc3.weight, net.feat_conv3.fc3.weight)


def test_key_map_problems_are_listed_together(tmp_path):
    sd = OrderedDict(PointFeatureNet().state_dict())
    sd.pop("gamma")
    sd["feat_conv1.fc1.weight"] = torch.zeros(32, 7, 1, 1)
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): \['gamma'\].*unexpected keys \(1\): \['extra.weight'\]"
                                              r".*feat_conv1.fc1.weight: checkpoint \(32, 7, 1, 1\) vs model \(32, 6, 1, 1\)"):
        load_point_features(PointFeatureNet(), read_point_feature_checkpoint(tmp_path / "bad.pth"))
    # FLOT's refinement keys are only droppable into a model without them
    flot_sd = OrderedDict(FLOTNet().state_dict())
    flot_sd.pop("fc.bias")
    torch.save({"model": flot_sd, "nb_iter": 1}, tmp_path / "flot.tar")
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): \['fc.bias'\]"):
        load_flot(tmp_path / "flot.tar")


def test_layout_refusals(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_point_feature_checkpoint(tmp_path / "nothing.tar")
    torch.save({"model": PointFeatureNet().state_dict(), "epoch": 3}, tmp_path / "wrapped.tar")
    with pytest.raises(CheckpointError, match="needs SCOOP's 'args'.*or FLOT's 'nb_iter'"):
        read_point_feature_checkpoint(tmp_path / "wrapped.tar")
    torch.save(PointFeatureNet().state_dict(), tmp_path / "features.pth")
    with pytest.raises(CheckpointError, match="expected FLOT's .* layout, found a state_dict file"):
        load_flot(tmp_path / "features.pth")
    (tmp_path / "text.tar").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="text.tar.*refused"):
        read_point_feature_checkpoint(tmp_path / "text.tar")


class _Payload:
    """Unpickling this would run ``open(path, 'w')``: the reader must refuse before building it."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_checkpoint_that_would_run_code_is_refused_unbuilt(tmp_path):
    marker = tmp_path / "pwned"
    args = argparse.Namespace(nb_iter=1, nb_neigh_cross_recon=64, hook=_Payload(str(marker)))
    torch.save({"args": args, "model": PointFeatureNet().state_dict()}, tmp_path / "evil.tar")
    with pytest.raises(CheckpointError, match="weights_only=True"):
        read_point_feature_checkpoint(tmp_path / "evil.tar")
    assert not marker.exists()
    assert not os.path.exists(str(marker))


def test_setconv_by_hand():
    """One SetConv on 4 points, k = 2, against a direct transcription of the official loop."""
    torch.manual_seed(0)
    conv = SetConv(2, 3)
    for m in (conv.bn1, conv.bn2, conv.bn3):
        torch.nn.init.uniform_(m.weight, 0.5, 1.5)
        torch.nn.init.uniform_(m.bias, -0.2, 0.2)
    pts = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 2, 0], [0, 0, 3]]])
    feat = torch.randn(1, 4, 2)
    edges = torch.tensor([[[0, 1], [1, 0], [2, 0], [3, 0]]])
    got = conv(feat.transpose(1, 2), edge_offsets(pts, edges), edges).transpose(1, 2)
    # official: cat(signal[edges], p_j - p_i) as (b, n, k, c+3) -> (b, c+3, k, n), conv/IN/lrelu x3, max over k
    x = torch.cat([feat[0][edges[0]], pts[0][edges[0]] - pts[0][:, None]], -1)[None].permute(0, 3, 2, 1)
    for fc, bn in ((conv.fc1, conv.bn1), (conv.fc2, conv.bn2), (conv.fc3, conv.bn3)):
        x = torch.nn.functional.leaky_relu(bn(fc(x)), 0.1)
    want = x.max(2)[0].transpose(1, 2)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_point_graph_includes_self_and_checks_input():
    pts = torch.from_numpy(np.random.default_rng(0).uniform(-5, 5, (1, 200, 3)).astype(np.float32))
    for method in ("kdtree", "expanded"):
        g = point_graph(pts, 32, method)
        assert g.shape == (1, 200, 32) and torch.equal(g[0, :, 0], torch.arange(200))
    d = torch.cdist(pts[0].double(), pts[0].double())
    want = torch.argsort(d, 1)[:, :32]
    np.testing.assert_array_equal(np.sort(point_graph(pts)[0].numpy(), 1), np.sort(want.numpy(), 1))
    with pytest.raises(ShapeError, match="k=32 needs at least 32 points"):
        point_graph(pts[:, :10])
    with pytest.raises(UnknownNameError, match="point_graph method"):
        point_graph(pts, method="faiss")
