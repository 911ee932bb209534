"""Loaders on the real samples in ../shared/data (official layouts rebuilt with symlinks in tmp dirs)."""

from __future__ import annotations

import os

import numpy as np

from motionflow.datasets import get_dataset
from motionflow.io import read_flow, read_sintel_mask


def _link(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(src, dst)


def test_sintel_alley_1_clip(sample_data, tmp_path):
    src = sample_data / "sintel_alley_1"
    for sub in ("clean", "final", "flow", "occlusions", "invalid"):
        _link(src / sub, tmp_path / "training" / sub / "alley_1")
    ds = get_dataset("sintel", tmp_path, split="training", frames=4, **{"pass": "final"})
    assert len(ds) == 1 and ds.ids == ["alley_1/frame_0001"]
    s = ds[0]
    assert s.frames.shape == (4, 3, 436, 1024) and s.flow.shape == (3, 2, 436, 1024)
    assert s.pair_index == (0, 1, 2)
    f2, _ = read_flow(src / "flow" / "frame_0002.flo")
    np.testing.assert_array_equal(s.flow[1], f2.transpose(2, 0, 1))
    # invalid/frame_0002 removes pixels from the second flow only
    assert s.valid[0].all() and s.valid[2].all()
    invalid = read_sintel_mask(src / "invalid" / "frame_0002.png")
    assert invalid.sum() > 0 and np.array_equal(s.valid[1], ~invalid)
    assert s.occluded is None  # occlusion masks exist for frame 2 only
    pairs = get_dataset("sintel", tmp_path, frames=2)
    assert pairs.ids == ["alley_1/frame_0001", "alley_1/frame_0002", "alley_1/frame_0003"]
    mid = pairs[1]
    assert mid.occluded is not None and 0.001 < mid.occluded.mean() < 0.2


def test_kitti_000000(sample_data, tmp_path):
    src = sample_data / "kitti2015_flow_000000"
    _link(src / "000000_10.png", tmp_path / "training" / "image_2" / "000000_10.png")
    _link(src / "000000_11.png", tmp_path / "training" / "image_2" / "000000_11.png")
    _link(src / "flow_gt.png", tmp_path / "training" / "flow_occ" / "000000_10.png")
    s = get_dataset("kitti2015", tmp_path)[0]
    assert s.id == "000000_10" and s.frames.shape == (2, 3, 375, 1242)
    assert 0.15 < s.valid.mean() < 0.17 and s.occluded is None
    assert np.abs(s.flow[0][:, s.valid[0]]).max() < 512


def test_flyingchairs_flownet2(sample_data):
    ds = get_dataset("chairs", sample_data / "flyingchairs_flownet2", split="all")
    assert ds.ids == ["0000001", "0000006"]
    for s in ds:
        assert s.frames.shape == (2, 3, 384, 512) and s.flow.shape == (1, 2, 384, 512) and s.valid.all()


def test_av2_pair(sample_data):
    root = sample_data / "av2_sceneflow_7fab2350"
    ds = get_dataset("av2", root)
    assert ds.ids == ["av2_sceneflow_7fab2350/315966265259836000"]
    s = ds[0]
    assert 98_000 < len(s.pc1) < 100_000 and s.flow.shape == s.pc1.shape
    gt_ego = np.load(root / "ego_motion.npz")["ego_motion"].reshape(4, 4)
    np.testing.assert_allclose(s.ego_motion, gt_ego, atol=2e-3)
    ego_flow = s.pc1 @ s.ego_motion[:3, :3].T + s.ego_motion[:3, 3] - s.pc1
    err = np.linalg.norm(s.flow - ego_flow, axis=1)
    background = s.classes == 0
    assert background.mean() > 0.85
    assert np.percentile(err[background], 99) < 0.03
    static = ~s.meta["dynamic"]
    assert np.percentile(err[static], 99) < 0.05
    assert s.ground1 is not None and 0.05 < s.ground1.mean() < 0.5
    c = get_dataset("av2", root, compensate_ego=True)[0]
    assert c.frame == "ego-compensated"
    assert np.percentile(np.linalg.norm(c.flow[background], axis=1), 99) < 0.03
    assert np.linalg.norm(c.flow[s.meta["dynamic"]], axis=1).mean() > 0.1


def test_velodyne_sequence(sample_data):
    root = sample_data / "kitti_velodyne_seq_patchworkpp"
    ds = get_dataset("velodyne", root)
    assert len(ds) == 5 and ds.ids == [f"{i:06d}" for i in range(5)]
    s = ds[4]
    assert 120_000 < len(s.pc1) < 130_000 and s.ego_motion is None and s.flow is None
    assert len(s.meta["intensity"][0]) == len(s.pc1)
    w = get_dataset("velodyne", root, frames=6)
    assert len(w) == 1 and len(w[0].sweeps) == 6
