"""Every real sample file in ../shared/data reads with its known properties."""

from __future__ import annotations

import numpy as np

from motionflow.io import read_feather, read_flow, read_image, read_points, read_sintel_mask


def test_sintel_files(sample_data):
    root = sample_data / "sintel_alley_1"
    for i in (1, 2, 3):
        flow, valid = read_flow(root / "flow" / f"frame_{i:04d}.flo")
        assert flow.shape == (436, 1024, 2) and valid.all()
        assert 0.1 < np.abs(flow).mean() < 50
    for p in ("clean", "final"):
        for i in range(1, 5):
            img = read_image(root / p / f"frame_{i:04d}.png")
            assert img.shape == (436, 1024, 3) and img.dtype == np.uint8
    occ = read_sintel_mask(root / "occlusions" / "frame_0002.png")
    inv = read_sintel_mask(root / "invalid" / "frame_0002.png")
    assert occ.shape == inv.shape == (436, 1024)
    assert 0.001 < occ.mean() < 0.2


def test_sintel_flow_warps_frame(sample_data):
    # The GT flow must map frame 1 onto frame 2 far better than zero flow does (checks u/v order).
    root = sample_data / "sintel_alley_1"
    f1 = read_image(root / "clean" / "frame_0001.png").astype(np.float32)
    f2 = read_image(root / "clean" / "frame_0002.png").astype(np.float32)
    flow, _ = read_flow(root / "flow" / "frame_0001.flo")
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    xt = np.clip(np.rint(xs + flow[..., 0]), 0, w - 1).astype(int)
    yt = np.clip(np.rint(ys + flow[..., 1]), 0, h - 1).astype(int)
    warped_err = np.abs(f2[yt, xt] - f1).mean()
    swapped_err = np.abs(f2[np.clip(np.rint(ys + flow[..., 0]), 0, h - 1).astype(int),
                            np.clip(np.rint(xs + flow[..., 1]), 0, w - 1).astype(int)] - f1).mean()
    assert warped_err < 0.6 * np.abs(f2 - f1).mean()
    assert warped_err < swapped_err


def test_kitti_files(sample_data):
    root = sample_data / "kitti2015_flow_000000"
    flow, valid = read_flow(root / "flow_gt.png")
    assert flow.shape == (375, 1242, 2)
    assert 0.15 < valid.mean() < 0.17
    assert np.all(flow[~valid] == 0)
    assert np.abs(flow[valid]).max() < 512
    for n in ("000000_10.png", "000000_11.png"):
        assert read_image(root / n).shape == (375, 1242, 3)


def test_kitti_flow_warps_frame_10_onto_11(sample_data):
    # Channel order on the real file: valid = B > 0 alone cannot tell RGB from BGR (invalid pixels are
    # all zero), but u = R and v = G must carry the _10 frame's valid pixels onto the _11 frame.
    root = sample_data / "kitti2015_flow_000000"
    f1 = read_image(root / "000000_10.png").astype(np.float32)
    f2 = read_image(root / "000000_11.png").astype(np.float32)
    flow, valid = read_flow(root / "flow_gt.png")
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]

    def error(u, v):
        xt = np.clip(np.rint(xs + u), 0, w - 1).astype(int)
        yt = np.clip(np.rint(ys + v), 0, h - 1).astype(int)
        return np.abs(f2[yt, xt] - f1)[valid].mean()

    u, v = flow[..., 0], flow[..., 1]
    gt = error(u, v)  # measured 17.2 grey levels; zero flow 41.1, u/v swapped 42.5, negated 56.5
    assert gt < 0.6 * error(0 * u, 0 * v) and gt < 0.6 * error(v, u) and gt < 0.6 * error(-u, -v)


def test_chairs_files(sample_data):
    root = sample_data / "flyingchairs_flownet2"
    for s in ("0000001", "0000006"):
        flow, valid = read_flow(root / f"{s}-gt.flo")
        assert flow.shape == (384, 512, 2) and valid.all()
        assert read_image(root / f"{s}-img0.ppm").shape == (384, 512, 3)


def test_av2_files(sample_data):
    root = sample_data / "av2_sceneflow_7fab2350"
    sweeps = sorted((root / "sensors" / "lidar").glob("*.feather"))
    assert len(sweeps) == 2
    pts0, inten = read_points(sweeps[0], intensity=True)
    assert 98_000 < len(pts0) < 100_000 and pts0.dtype == np.float32 and len(inten) == len(pts0)
    labels = read_feather(root / "flow_labels.feather", ["flow_tx_m", "flow_ty_m", "flow_tz_m", "classes"])
    assert len(labels["flow_tx_m"]) == len(pts0)
    poses = read_feather(root / "city_SE3_egovehicle.feather", ["timestamp_ns", "qw", "tx_m"])
    assert int(sweeps[0].stem) in set(poses["timestamp_ns"].tolist())


def test_velodyne_files(sample_data):
    root = sample_data / "kitti_velodyne_seq_patchworkpp"
    scans = sorted(root.glob("*.bin"))
    assert len(scans) == 6
    for s in scans[:2]:
        pts, refl = read_points(s, intensity=True)
        assert 120_000 < len(pts) < 130_000
        assert 0 <= refl.min() and refl.max() <= 1.0
        r = np.linalg.norm(pts[:, :2], axis=1)
        assert r.max() < 130
