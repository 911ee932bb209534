"""classical (default preset) against opencv-dis (MEDIUM) on real shared samples (the issue's goal;
benchmarks/classical.py reports every sample with timings)."""

import numpy as np
import torch

from motionflow.eval.optical import endpoint_error, flow_outliers
from motionflow.io import read_flow, read_image, read_kitti_png
from motionflow.registry import get_optical_flow_method


def _scores(method, frames, gt, valid):
    x = torch.from_numpy(np.stack([f.transpose(2, 0, 1) for f in frames])).float()[None]
    pred = get_optical_flow_method(method)(x).flow[0].numpy()
    epe = endpoint_error(pred, gt)[valid]
    fl = 100 * flow_outliers(epe, np.sqrt((gt**2).sum(1))[valid]).mean()
    return epe.mean(), fl


def test_classical_beats_dis_on_flyingchairs(sample_data):
    root = sample_data / "flyingchairs_flownet2"
    frames = [read_image(root / f"0000001-img{i}.ppm") for i in (0, 1)]
    g, v = read_flow(root / "0000001-gt.flo")
    ours, _ = _scores("classical", frames, g.transpose(2, 0, 1)[None], v[None])
    dis, _ = _scores("opencv-dis", frames, g.transpose(2, 0, 1)[None], v[None])
    assert ours < 0.9 * dis, (ours, dis)


def test_classical_beats_dis_on_kitti_epe_and_fl_all(sample_data):
    root = sample_data / "kitti2015_flow_000000"
    frames = [read_image(root / f"000000_1{i}.png") for i in (0, 1)]
    g, v = read_kitti_png(root / "flow_gt.png")
    e_ours, fl_ours = _scores("classical", frames, g.transpose(2, 0, 1)[None], v[None])
    e_dis, fl_dis = _scores("opencv-dis", frames, g.transpose(2, 0, 1)[None], v[None])
    assert e_ours < 0.7 * e_dis, (e_ours, e_dis)
    assert fl_ours < fl_dis, (fl_ours, fl_dis)


def test_classical_beats_dis_on_sintel_final_with_three_frames(sample_data):
    root = sample_data / "sintel_alley_1"
    frames = [read_image(root / "final" / f"frame_{i:04d}.png") for i in range(1, 4)]
    gts = [read_flow(root / "flow" / f"frame_{i:04d}.flo") for i in range(1, 3)]
    gt = np.stack([g.transpose(2, 0, 1) for g, _ in gts])
    valid = np.stack([v for _, v in gts])
    ours, _ = _scores("classical", frames, gt, valid)
    dis, _ = _scores("opencv-dis", frames, gt, valid)
    assert ours < 0.95 * dis, (ours, dis)
