"""Lidar loaders on tiny trees in their exact layouts: keys, cuts, splits, NaN points, time order."""

from __future__ import annotations

import numpy as np
import pytest

from motionflow.datasets import get_dataset
from motionflow.datasets.av2 import quat_to_matrix
from motionflow.errors import DatasetNotFoundError, FormatError, UnknownNameError
from motionflow.io import write_feather, write_points


def _pts(n, seed):
    return np.random.default_rng(seed).uniform(-20, 20, (n, 3)).astype(np.float32)


def test_flownet3d_splits(tmp_path):
    for i in range(150):
        np.savez(tmp_path / f"{i:06d}.npz", pos1=np.full((2, 3), i, np.float32), pos2=np.zeros((3, 3), np.float32),
                 gt=np.ones((2, 3), np.float32))
    assert len(get_dataset("kitti-sf-flownet3d", tmp_path)) == 150
    nsfp = get_dataset("kitti-sf-flownet3d", tmp_path, split="nsfp-test")
    assert nsfp.ids == [f"{i:06d}" for i in range(100, 150)]
    scoop = get_dataset("kitti-sf-flownet3d", tmp_path, split="scoop-test")
    assert len(scoop) == 50 and scoop.ids[:4] == ["000001", "000005", "000007", "000008"]
    assert len(set(scoop.ids) & set(nsfp.ids)) == 0  # the two "KITTI 50 test" sets are disjoint
    tr, va = get_dataset("kitti-sf-flownet3d", tmp_path, split="scoop-train"), get_dataset(
        "kitti-sf-flownet3d", tmp_path, split="scoop-val")
    assert len(tr) == 90 and len(va) == 10 and not set(tr.ids) & (set(va.ids) | set(scoop.ids))
    s = scoop[1]
    assert s.id == "000005" and s.pc1[0, 0] == 5 and s.flow.shape == (2, 3) and scoop.kind == "scene"
    with pytest.raises(UnknownNameError, match="nsfp-test.*'kitti50'"):
        get_dataset("kitti-sf-flownet3d", tmp_path, split="kitti50")
    (tmp_path / "000100.npz").unlink()
    with pytest.raises(DatasetNotFoundError, match="150 samples, found 149"):
        get_dataset("kitti-sf-flownet3d", tmp_path, split="nsfp-test")


def test_flownet3d_keys_and_depth_cut(tmp_path):
    pos1 = np.array([[10, 0, 0], [40, 1, 1], [5, 2, 2]], np.float32)
    pos2 = np.array([[36, 0, 0], [1, 1, 1]], np.float32)
    gt = np.arange(9, dtype=np.float32).reshape(3, 3)
    np.savez(tmp_path / "000000.npz", pos1=pos1, pos2=pos2, gt=gt)
    s = get_dataset("kitti-sf-flownet3d", tmp_path, max_depth=35.0)[0]
    np.testing.assert_array_equal(s.pc1, pos1[[0, 2]])
    np.testing.assert_array_equal(s.flow, gt[[0, 2]])
    np.testing.assert_array_equal(s.pc2, pos2[[1]])
    np.savez(tmp_path / "000001.npz", pos1=pos1, pos2=pos2)
    with pytest.raises(FormatError, match=r"000001\.npz.*missing \['gt'\]"):
        get_dataset("kitti-sf-flownet3d", tmp_path)[1]
    with pytest.raises(UnknownNameError, match="unknown options.*max_depth"):
        get_dataset("kitti-sf-flownet3d", tmp_path, depth=3)


def test_hplflownet_ground_and_depth(tmp_path):
    d = tmp_path / "KITTI_processed_occ_final" / "000007"
    d.mkdir(parents=True)
    pc1 = np.array([[0, -2.0, 10], [0, -2.0, 10], [0, 0, 10], [0, 0, 36], [1, 1, 1]], np.float32)
    pc2 = np.array([[0, -2.0, 11], [0, -1.0, 11], [0, 0, 11], [0, 0, 30], [1, 1, 40]], np.float32)
    np.save(d / "pc1.npy", pc1)
    np.save(d / "pc2.npy", pc2)
    s = get_dataset("kitti-sf-hplflownet", tmp_path)[0]
    # row 0 is ground in both (dropped); row 1 only in pc1 (kept); rows 3, 4 are beyond 35 m in one cloud
    assert s.id == "000007" and s.meta["kept_index1"].tolist() == [1, 2]
    np.testing.assert_array_equal(s.flow, pc2[[1, 2]] - pc1[[1, 2]])
    raw = get_dataset("kitti-sf-hplflownet", tmp_path, remove_ground=False, max_depth=None)[0]
    assert len(raw.pc1) == 5
    np.save(d / "pc2.npy", pc2[:4])
    with pytest.raises(FormatError, match="1:1 correspondence"):
        get_dataset("kitti-sf-hplflownet", tmp_path)[0]
    with pytest.raises(DatasetNotFoundError, match="142 samples, found 1"):
        get_dataset("kitti-sf-hplflownet", tmp_path, split="scoop-test")


def test_lidar_kitti_per_cloud_cuts(tmp_path):
    pc1 = np.array([[0, -2, 5], [0, 0, 5], [0, 0, 40]], np.float32)
    pc2 = np.array([[0, 0, 5], [0, -1.5, 6]], np.float32)
    np.savez(tmp_path / "a.npz", pc1=pc1, pc2=pc2, flow=np.eye(3, dtype=np.float32))
    s = get_dataset("lidar-kitti", tmp_path)[0]
    np.testing.assert_array_equal(s.pc1, pc1[[1]])
    np.testing.assert_array_equal(s.flow, np.eye(3, dtype=np.float32)[[1]])
    np.testing.assert_array_equal(s.pc2, pc2[[0]])


def test_nsfp_sets_with_nan_points_and_masks(tmp_path):
    log = tmp_path / "val" / "log1"
    log.mkdir(parents=True)
    pc1 = _pts(6, 0)
    pc1[2] = np.nan
    flow = np.arange(18, dtype=np.float32).reshape(6, 3)
    pc2 = _pts(4, 1)
    pc2[3] = np.nan
    np.savez(log / "100_200.npz", pc1=pc1, pc2=pc2, flow=flow,
             mask1_tracks_flow=np.array([1, 3]), mask2_tracks_flow=np.array([0, 1, 0, 0], bool))
    ds = get_dataset("argoverse-nsfp", tmp_path)
    assert ds.ids == ["log1/100_200"] and ds.split == "val"
    s = ds[0]
    assert len(s.pc1) == 5 and len(s.pc2) == 3 and s.meta["num_nonfinite_dropped"] == (1, 1)
    np.testing.assert_array_equal(s.flow, flow[[0, 1, 3, 4, 5]])
    assert s.meta["kept_index1"].tolist() == [0, 1, 3, 4, 5]
    assert s.meta["mask1_tracks_flow"].tolist() == [False, True, True, False, False]
    assert s.meta["mask2_tracks_flow"].tolist() == [False, True, False]
    with pytest.raises(DatasetNotFoundError, match="train"):
        get_dataset("nuscenes-nsfp", tmp_path, split="train")
    # a bool mask of the wrong length or an index past the cloud is an error, not a silent 0/1 index list
    for bad, message in ((np.array([1, 0, 1], bool), r"'mask1_tracks_flow': expected a bool mask of shape \(6,\)"),
                         (np.array([1, 6]), r"'mask1_tracks_flow': expected point indices in \[0, 6\), found 1..6")):
        np.savez(log / "100_200.npz", pc1=pc1, pc2=pc2, flow=flow, mask1_tracks_flow=bad)
        with pytest.raises(FormatError, match=message):
            get_dataset("argoverse-nsfp", tmp_path)[0]
    assert get_dataset("nuscenes-nsfp", tmp_path, split="all").ids == ["val/log1/100_200"]


def test_waymo_time_order(tmp_path):
    seg = tmp_path / "segment-1"
    seg.mkdir()
    later, earlier = _pts(5, 2), _pts(7, 3)
    flow = _pts(5, 4) * 0.01
    np.savez(seg / "200_100.npz", pc1=later, pc2=earlier, flow=flow)
    f = get_dataset("waymo-fnsf", tmp_path)[0]
    assert f.id == "segment-1/200_100" and f.meta["time_order"] == "backward"
    np.testing.assert_array_equal(f.pc1, later)
    np.testing.assert_array_equal(f.flow, flow)
    fw = get_dataset("waymo-fnsf", tmp_path, order="forward")[0]
    np.testing.assert_array_equal(fw.pc1, earlier)
    np.testing.assert_array_equal(fw.pc2, later)
    assert fw.flow is None
    np.testing.assert_array_equal(fw.meta["backward_flow"], flow)
    with pytest.raises(UnknownNameError, match="order.*'reverse'"):
        get_dataset("waymo-fnsf", tmp_path, order="reverse")


def test_pairs(tmp_path):
    (tmp_path / "sub").mkdir()
    np.savez(tmp_path / "sub" / "x.npz", pc1=_pts(4, 0), pc2=_pts(3, 1))
    np.savez(tmp_path / "y.npz", pc1=_pts(4, 0), pc2=_pts(3, 1), flow=np.zeros((4, 3)), ego_motion=np.eye(4),
             valid=np.array([1, 0, 1, 1], bool))
    ds = get_dataset("pairs", tmp_path)
    assert ds.ids == ["sub/x", "y"] and ds.kind == "scene"
    assert ds[0].flow is None
    assert ds[1].valid.tolist() == [True, False, True, True] and ds[1].ego_motion.shape == (4, 4)
    np.savez(tmp_path / "z.npz", pc1=_pts(4, 0), pc2=_pts(3, 1), flow=np.zeros((3, 3)))
    with pytest.raises(FormatError, match=r"z\.npz.*'flow' of shape \(4, 3\).*\(3, 3\)"):
        get_dataset("pairs", tmp_path)[2]
    (tmp_path / "w.npz").write_bytes(b"PK\x03\x04truncated")
    ds = get_dataset("pairs", tmp_path)
    assert ds.ids == ["sub/x", "w", "y", "z"]
    with pytest.raises(FormatError, match=r"w\.npz"):
        ds[1]


def _pose_rows(stamps, poses):
    from scipy.spatial.transform import Rotation

    cols = {k: [] for k in ("timestamp_ns", "qw", "qx", "qy", "qz", "tx_m", "ty_m", "tz_m")}
    for ts, m in zip(stamps, poses):
        x, y, z, w = Rotation.from_matrix(m[:3, :3]).as_quat()
        for k, v in zip(cols, (ts, w, x, y, z, *m[:3, 3])):
            cols[k].append(v)
    return {k: np.array(v, np.int64 if k == "timestamp_ns" else np.float64) for k, v in cols.items()}


def _se3(yaw, t):
    from scipy.spatial.transform import Rotation

    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler("z", yaw).as_matrix()
    m[:3, 3] = t
    return m


def make_av2_log(log, n_sweeps=3, nan_row=None, labels="per-sweep"):
    stamps = [1000 + 100 * i for i in range(n_sweeps)]
    poses = [_se3(0.05 * i, [2.0 * i, 0.5 * i, 0.0]) for i in range(n_sweeps)]
    write_feather(log / "city_SE3_egovehicle.feather", _pose_rows(stamps, poses))
    clouds = []
    for i, ts in enumerate(stamps):
        pts = _pts(20 + i, 10 + i)
        if nan_row is not None and i == 0:
            pts[nan_row] = np.nan
        clouds.append(pts)
        write_points(log / "sensors" / "lidar" / f"{ts}.feather", pts)
    for i in range(n_sweeps - 1):
        ego = np.linalg.inv(poses[i + 1]) @ poses[i]
        p = clouds[i].astype(np.float64)
        flow = (p @ ego[:3, :3].T + ego[:3, 3] - p).astype(np.float32)
        flow[:3] += 1.0  # three moving points
        cols = {"flow_tx_m": flow[:, 0], "flow_ty_m": flow[:, 1], "flow_tz_m": flow[:, 2],
                "classes_0": np.r_[[1, 1, 1], np.zeros(len(p) - 3)].astype(np.uint8),
                "is_valid": np.r_[np.ones(len(p) - 1), [0]].astype(bool),
                "is_ground_0": (np.arange(len(p)) % 2 == 0)}
        if labels == "per-sweep":
            write_feather(log / "flow_labels" / f"{stamps[i]}.feather", cols)
        elif labels == "root" and i == 0:
            write_feather(log / "flow_labels.feather", cols)
    return stamps, poses, clouds


def test_av2_tree(tmp_path):
    stamps, poses, clouds = make_av2_log(tmp_path / "val" / "log-a", nan_row=4)
    ds = get_dataset("av2", tmp_path, split="val")
    assert ds.ids == ["log-a/1000", "log-a/1100"] and ds.kind == "scene"
    s = ds[0]
    ego = np.linalg.inv(poses[1]) @ poses[0]
    np.testing.assert_allclose(s.ego_motion, ego, atol=1e-9)
    assert len(s.pc1) == 19 and s.meta["kept_index1"][4] == 5 and s.meta["num_nonfinite_dropped"] == (1, 0)
    static = s.classes == 0
    pred = s.pc1 @ ego[:3, :3].T + ego[:3, 3]
    np.testing.assert_allclose((s.pc1 + s.flow)[static], pred[static], atol=1e-3)
    assert not s.valid[-1] and s.valid[:-1].all()
    assert s.ground1.tolist() == [(i % 2 == 0) for i in range(20) if i != 4]
    assert s.ground2 is not None and len(s.ground2) == 21  # from the next pair's labels
    c = get_dataset("av2", tmp_path, split="val", compensate_ego=True)[0]
    assert c.frame == "ego-compensated" and np.allclose(c.ego_motion, np.eye(4))
    np.testing.assert_allclose(c.flow[c.classes == 0], 0, atol=1e-3)
    np.testing.assert_allclose(c.flow[:3], 1.0, atol=1e-3)  # object motion only: the +1 m of the movers
    np.testing.assert_allclose(c.pc1 + c.flow, s.pc1 @ ego[:3, :3].T + ego[:3, 3] + (s.flow - (pred - s.pc1)), atol=1e-3)
    # pose quaternion convention (scalar first) against scipy
    from scipy.spatial.transform import Rotation

    q = Rotation.from_euler("xyz", [0.1, -0.2, 0.3]).as_quat()
    np.testing.assert_allclose(quat_to_matrix(q[3], *q[:3]), Rotation.from_quat(q).as_matrix(), atol=1e-12)


def test_av2_layouts_and_errors(tmp_path):
    make_av2_log(tmp_path / "log-b", labels="root")
    ds = get_dataset("av2", tmp_path / "log-b")  # a single log as root
    assert ds.ids == ["log-b/1000", "log-b/1100"]
    assert ds[0].flow is not None and ds[1].flow is None
    assert get_dataset("av2", tmp_path / "log-b", labelled_only=True).ids == ["log-b/1000"]
    # BucketedSceneFlowEval-style labels root
    lab = tmp_path / "labels" / "log-b"
    lab.mkdir(parents=True)
    write_feather(lab / "1100.feather", {"flow_tx_m": np.zeros(5, np.float32), "flow_ty_m": np.zeros(5, np.float32),
                                        "flow_tz_m": np.zeros(5, np.float32)})
    ds2 = get_dataset("av2", tmp_path / "log-b", labels_root=tmp_path / "labels")
    with pytest.raises(FormatError, match=r"1100\.feather.*\(21\), found 5 rows.*masked"):
        ds2[1]
    with pytest.raises(DatasetNotFoundError, match="sensors/lidar"):
        get_dataset("av2", tmp_path / "labels", split="val")


def test_velodyne_sequence_with_poses(tmp_path):
    for i in range(4):
        write_points(tmp_path / f"{i:06d}.bin", _pts(10 + i, i), np.full(10 + i, 0.5, np.float32))
    tr = _se3(0.3, [0.1, -0.2, 0.3])
    cam = [_se3(0.1 * i, [0, 0, 1.5 * i]) for i in range(4)]
    (tmp_path / "poses.txt").write_text("\n".join(" ".join(f"{v:.12e}" for v in m[:3].ravel()) for m in cam))
    (tmp_path / "calib.txt").write_text("P0: " + " ".join(["0"] * 12) + "\nTr: " + " ".join(f"{v:.12e}" for v in tr[:3].ravel()))
    ds = get_dataset("velodyne", tmp_path)
    assert ds.ids == ["000000", "000001", "000002"]
    s = ds[1]
    velo = [np.linalg.inv(tr) @ m @ tr for m in cam]
    np.testing.assert_allclose(s.ego_motion, np.linalg.inv(velo[2]) @ velo[1], atol=1e-9)
    assert s.flow is None and s.frame == "sensor" and len(s.pc1) == 11
    w = get_dataset("velodyne", tmp_path, frames=3)
    assert len(w) == 2 and [len(x) for x in w[1].sweeps] == [11, 12, 13] and w[1].poses.shape == (3, 4, 4)
    (tmp_path / "poses.txt").write_text("1 2 3\n")
    with pytest.raises(FormatError, match=r"poses.txt:1: expected 12 numbers"):
        get_dataset("velodyne", tmp_path)


def test_velodyne_pcd_and_errors(tmp_path):
    pytest.importorskip("open3d")
    for i in range(3):
        write_points(tmp_path / f"s{i}.ply", _pts(8, i))
    ds = get_dataset("velodyne", tmp_path)
    assert len(ds) == 2 and ds[0].ego_motion is None and ds[0].pc1.shape == (8, 3)
    write_points(tmp_path / "s9.npy", _pts(8, 9))
    with pytest.raises(FormatError, match="one format"):
        get_dataset("velodyne", tmp_path)
