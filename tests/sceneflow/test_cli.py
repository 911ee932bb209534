import numpy as np
import pytest

from motionflow.cli.main import main


def _pair(tmp_path):
    rng = np.random.default_rng(0)
    pc1 = rng.uniform(-5, 5, (300, 3)).astype(np.float32)
    pc1[:50, 2] = 0.0  # "ground"
    pc2 = pc1 + np.float32([1e-3, 0, 0])
    np.savez(tmp_path / "a.npz", pc1=pc1)
    np.save(tmp_path / "b.npy", pc2)
    return pc1, pc2


def test_sceneflow_cli_writes_aligned_npz(tmp_path, capsys):
    pc1, pc2 = _pair(tmp_path)
    out = tmp_path / "flow.npz"
    png = tmp_path / "bev.png"
    rc = main(["sceneflow", str(tmp_path / "a.npz"), str(tmp_path / "b.npy"), "--out", str(out), "--method", "nn",
               "--ground", "height", "--ground-height", "0.0", "--crop", "4", "--viz", str(png)])
    assert rc == 0
    z = np.load(out)
    assert np.array_equal(z["pc1"], pc1) and z["flow"].shape == pc1.shape
    kept = (np.abs(pc1[:, :2]) <= 4).all(1) & (pc1[:, 2] > 0)
    assert np.array_equal(z["valid"], kept)
    np.testing.assert_allclose(z["flow"][kept], np.broadcast_to([1e-3, 0, 0], (kept.sum(), 3)), atol=1e-6)
    assert np.isnan(z["flow"][~kept]).all()
    assert png.exists() and '"method": "nn"' in capsys.readouterr().out


def test_sceneflow_cli_iterative_options_and_errors(tmp_path, capsys):
    _pair(tmp_path)
    out = tmp_path / "f.npz"
    rc = main(["sceneflow", str(tmp_path / "a.npz"), str(tmp_path / "b.npy"), "--out", str(out), "--method", "fnsf",
               "--iters", "3", "--max-points", "100", "--threads", "1"])
    assert rc == 0 and int(np.load(out)["iterations"]) <= 3 and np.isfinite(np.load(out)["flow"]).all()
    assert main(["sceneflow", str(tmp_path / "a.npz"), str(tmp_path / "b.npy"), "--out", str(out),
                 "--crop", "1", "2"]) == 1
    assert "--crop: expected 1 or 6 values, found 2" in capsys.readouterr().err
    assert main(["sceneflow", str(tmp_path / "a.npz"), str(tmp_path / "b.npy"), "--out", str(out), "--method", "nn",
                 "--iters", "5"]) == 1
    assert "not iterative" in capsys.readouterr().err
    assert main(["sceneflow", str(tmp_path / "missing.bin"), str(tmp_path / "b.npy"), "--out", str(out)]) == 1
    capsys.readouterr()
    # an unknown method is bad usage: exit 2 with one line that lists the valid ones (no usage block)
    assert main(["sceneflow", str(tmp_path / "a.npz"), str(tmp_path / "b.npy"), "--out", str(out), "--method", "raft"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown scene-flow method 'raft'; valid choices: " in err


def test_sceneflow_cli_fnsf_on_a_full_sweep_crops_to_its_default_range(tmp_path, capsys):
    # a sweep reaching 150 m with buildings up to 25 m: FNSF's 0.1 m grid over all of it would need
    # billions of cells and is refused; the CLI crops to OpenSceneFlow's range first
    from motionflow.errors import ShapeError
    from motionflow.sceneflow import estimate_scene_flow
    from motionflow.sceneflow.fnsf import DEFAULT_RANGE

    rng = np.random.default_rng(0)
    pc1 = np.concatenate([rng.uniform([-150, -150, -2], [150, 150, 25], (1500, 3)),
                          rng.uniform([-40, -40, -2], [40, 40, 2.5], (1500, 3))]).astype(np.float32)
    pc2 = pc1 + np.float32([0.05, 0, 0])
    np.save(tmp_path / "a.npy", pc1)
    np.save(tmp_path / "b.npy", pc2)
    with pytest.raises(ShapeError, match="above max_cells=72,000,000; crop the clouds"):
        estimate_scene_flow(pc1, pc2, method="fnsf")
    out = tmp_path / "f.npz"
    rc = main(["sceneflow", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--out", str(out), "--method", "fnsf",
               "--iters", "2", "--threads", "1", "--method-option", "voxel_size=0.25"])  # 158 M cells uncropped
    assert rc == 0
    lo, hi = np.array(DEFAULT_RANGE[:3]), np.array(DEFAULT_RANGE[3:])
    inside = ((pc1 >= lo) & (pc1 <= hi)).all(1)
    z = np.load(out)
    assert 1500 < inside.sum() < 3000 and np.array_equal(z["valid"], inside)
    assert '"crop": [-51.2, -51.2, -3.0, 51.2, 51.2, 3.0]' in capsys.readouterr().out
    # a bad --method-option and --fill rigid without an ego motion are refused before any work
    assert main(["sceneflow", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--out", str(out),
                 "--method-option", "voxel_size"]) == 1
    assert "--method-option: expected KEY=VALUE, found 'voxel_size'" in capsys.readouterr().err
    assert main(["sceneflow", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--out", str(out), "--method", "nn",
                 "--fill", "rigid"]) == 1
    assert "--fill rigid: method 'nn' needs --compensate-ego" in capsys.readouterr().err
    with pytest.raises(ShapeError, match="fill='rigid': method 'nsfp' needs ego_motion= or compensate_ego=True"):
        estimate_scene_flow(pc1, pc2, method="nsfp", fill="rigid", crop=10.0)


def test_sceneflow_cli_fill_rigid_with_the_rigid_method_uses_its_own_ego_motion(tmp_path):
    from motionflow.datasets.synthetic import synthetic_lidar_pair

    s = synthetic_lidar_pair(seed=0, num_boxes=8, num_moving=1)
    np.save(tmp_path / "a.npy", s.pc1)
    np.save(tmp_path / "b.npy", s.pc2)
    out = tmp_path / "f.npz"
    rc = main(["sceneflow", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--out", str(out), "--method", "rigid",
               "--crop", "15", "--fill", "rigid", "--threads", "1"])
    assert rc == 0
    z = np.load(out)
    far = (np.abs(s.pc1[:, :2]) > 15).any(1)
    assert far.sum() > 50 and np.isfinite(z["flow"]).all()
    # cropped points got the ego flow: for static points (all but one box) that is the truth
    static_far = far & (s.meta["instance1"] != 0)
    np.testing.assert_allclose(z["flow"][static_far], s.flow[static_far], atol=0.05)


def test_sceneflow_cli_ego_motion_given_identity_or_a_file(tmp_path, capfd):
    """--ego-motion: the rigid method uses the given transform (saved in the output as ego_motion) instead
    of estimating one; for an ego-compensated pair, identity; a file that is not a rigid 4x4 is one line."""
    from motionflow.datasets.synthetic import synthetic_lidar_pair
    from motionflow.geometry import apply_transform

    s = synthetic_lidar_pair(seed=1, num_boxes=8, num_moving=1)
    np.save(tmp_path / "a.npy", s.pc1)
    np.save(tmp_path / "b.npy", s.pc2)
    # a 1 m translation that is not the truth: the static points must follow it, not the estimate
    T = np.eye(4)
    T[0, 3] = 1.0
    np.savetxt(tmp_path / "T.txt", T)
    out = tmp_path / "f.npz"
    base = ["sceneflow", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--out", str(out), "--threads", "1"]
    assert main(base + ["--ego-motion", str(tmp_path / "T.txt"), "--fill", "rigid", "--crop", "15"]) == 0
    z = np.load(out)
    np.testing.assert_allclose(z["ego_motion"], T)
    far = (np.abs(s.pc1[:, :2]) > 15).any(1)
    np.testing.assert_allclose(z["flow"][far], apply_transform(s.pc1[far], T) - s.pc1[far], atol=1e-5)
    assert main(base + ["--ego-motion", "identity"]) == 0
    np.testing.assert_allclose(np.load(out)["ego_motion"], np.eye(4))
    capfd.readouterr()
    np.save(tmp_path / "bad.npy", np.eye(3))
    for bad, code, text in ((str(tmp_path / "bad.npy"), 1, "expected a rigid 4x4 transform"),
                            (str(tmp_path / "none.txt"), 1, "none.txt"), ("identity", 2, "--compensate-ego")):
        argv = base + ["--ego-motion", bad] + (["--method", "nn"] if code == 2 else [])
        rc = main(argv)
        err = capfd.readouterr().err.strip().splitlines()
        assert len(err) == 1 and text in err[0], err
        assert rc in (1, 2)
