"""The CLI's picture flags: sceneflow --viz/--view/--rerun (and estimate's, see test_estimate_pictures)."""

import json

import numpy as np

from motionflow.cli.main import main
from motionflow.io import read_image


def test_sceneflow_viz_side_view_and_recording(tmp_path, capsys):
    from motionflow.datasets.synthetic import synthetic_lidar_pair

    pair = synthetic_lidar_pair(seed=0)
    np.save(tmp_path / "a.npy", pair.pc1)
    np.save(tmp_path / "b.npy", pair.pc2)
    bev, side, rrd = tmp_path / "bev.png", tmp_path / "side.png", tmp_path / "pair.rrd"
    args = ["sceneflow", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--out", str(tmp_path / "f.npz"),
            "--method", "rigid"]
    assert main(args + ["--viz", str(bev), "--rerun", str(rrd)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["viz"] == str(bev) and summary["rerun"] == str(rrd)
    assert main(args[:-1] + ["zero", "--viz", str(side), "--view", "side"]) == 0
    top, profile = read_image(bev), read_image(side)
    img = top.astype(int)
    crimson = (img[..., 0] > 180) & (img[..., 1] < 80) & (img[..., 2] < 100)
    assert crimson.sum() > 30  # the rigid method's moving clusters as arrows
    assert profile.shape != top.shape
    from rerun.chunk import RrdReader

    entities = {c.entity_path for c in RrdReader(rrd).stream()}
    assert {"/lidar/pc1", "/lidar/pc2", "/lidar/flow", "/lidar/clusters", "/lidar/cluster_motion"} <= entities
