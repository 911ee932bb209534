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
    with pytest.raises(SystemExit) as e:
        main(["sceneflow", str(tmp_path / "a.npz"), str(tmp_path / "b.npy"), "--out", str(out), "--method", "raft"])
    assert e.value.code == 2
