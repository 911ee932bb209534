"""Images, Sintel masks and point clouds: round trips, channel order, error paths."""

from __future__ import annotations

import numpy as np
import pytest

from motionflow.errors import FormatError, ShapeError
from motionflow.io import (
    finite_rows,
    read_feather,
    read_image,
    read_points,
    read_sintel_mask,
    read_velodyne_bin,
    write_image,
    write_points,
    write_sintel_mask,
)


@pytest.mark.parametrize("suffix", [".png", ".ppm", ".bmp"])
def test_image_round_trip_is_rgb(tmp_path, suffix):
    cv2 = pytest.importorskip("cv2")
    img = np.zeros((4, 6, 3), np.uint8)
    img[..., 0] = 200  # pure red in RGB
    img[1, 2] = (1, 2, 3)
    p = tmp_path / f"i{suffix}"
    write_image(p, img)
    np.testing.assert_array_equal(read_image(p), img)
    # OpenCV stores BGR: the red channel must be the last one it sees.
    assert cv2.imread(str(p))[0, 0].tolist() == [0, 0, 200]


def test_image_errors(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(FormatError, match="bad.png.*could not|bad.png.*undecodable"):
        read_image(tmp_path / "bad.png")
    with pytest.raises(FormatError, match="expected an existing file"):
        read_image(tmp_path / "none.png")
    with pytest.raises(ShapeError, match="uint8"):
        write_image(tmp_path / "f.png", np.zeros((2, 2, 3), np.float32))


def test_sintel_mask_round_trip(tmp_path):
    m = np.zeros((3, 5), bool)
    m[1, 1:4] = True
    write_sintel_mask(tmp_path / "m.png", m)
    np.testing.assert_array_equal(read_sintel_mask(tmp_path / "m.png"), m)


def _cloud(n=50, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32) * 10


@pytest.mark.parametrize("suffix", [".bin", ".npy", ".npz", ".feather", ".ply", ".pcd"])
def test_points_round_trip(tmp_path, suffix):
    if suffix in (".ply", ".pcd"):
        pytest.importorskip("open3d")
    pts = _cloud()
    inten = np.linspace(0, 1, len(pts), dtype=np.float32)
    p = tmp_path / f"c{suffix}"
    with_i = suffix not in (".ply", ".pcd")
    write_points(p, pts, inten if with_i else None)
    back, bi = read_points(p, intensity=True)
    assert back.dtype == np.float32 and back.shape == pts.shape
    np.testing.assert_allclose(back, pts, rtol=0, atol=1e-5)
    if with_i:
        np.testing.assert_allclose(bi, inten)
    else:
        assert bi is None


def test_velodyne_bin_layout(tmp_path):
    raw = np.arange(12, dtype="<f4").reshape(3, 4)
    (tmp_path / "s.bin").write_bytes(raw.tobytes())
    pts, refl = read_points(tmp_path / "s.bin", intensity=True)
    assert pts.tolist() == [[0, 1, 2], [4, 5, 6], [8, 9, 10]] and refl.tolist() == [3, 7, 11]
    (tmp_path / "t.bin").write_bytes(raw.tobytes()[:-4])
    with pytest.raises(FormatError, match=r"multiple of 16 bytes\), found 44 bytes"):
        read_velodyne_bin(tmp_path / "t.bin")


def test_npz_key_selection(tmp_path):
    a, b = _cloud(5, 1), _cloud(6, 2)
    np.savez(tmp_path / "p.npz", pos1=a, pos2=b)
    np.testing.assert_array_equal(read_points(tmp_path / "p.npz"), a)  # default tries pc1, pos1
    np.testing.assert_array_equal(read_points(tmp_path / "p.npz", key="pos2"), b)
    with pytest.raises(FormatError, match=r"\['nope'\].*\['pos1', 'pos2'\]"):
        read_points(tmp_path / "p.npz", key="nope")
    np.savez(tmp_path / "q.npz", pc1=np.zeros((4, 2)))
    with pytest.raises(FormatError, match=r"\(N, 3\).*found \(4, 2\)"):
        read_points(tmp_path / "q.npz")


def test_points_errors(tmp_path):
    with pytest.raises(FormatError, match=r"\.bin, \.npy, \.npz, \.pcd, \.ply, \.feather.*'\.xyz'"):
        read_points(tmp_path / "a.xyz")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(FormatError, match="bad.npz"):
        read_points(tmp_path / "bad.npz")
    (tmp_path / "bad.feather").write_bytes(b"garbage")
    with pytest.raises(FormatError, match="bad.feather.*Feather"):
        read_points(tmp_path / "bad.feather")
    with pytest.raises(ShapeError):
        write_points(tmp_path / "a.npz", np.zeros((3, 4)))


def test_feather_missing_column(tmp_path):
    from motionflow.io import write_feather

    write_feather(tmp_path / "t.feather", {"x": np.zeros(3, np.float32), "y": np.zeros(3, np.float32)})
    with pytest.raises(FormatError, match=r"missing \['z'\]; found columns \['x', 'y'\]"):
        read_feather(tmp_path / "t.feather", ["x", "y", "z"])


def test_feather_optional_columns_and_xyz_without_intensity(tmp_path):
    from motionflow.io import write_feather

    xyz = {c: np.arange(3, dtype=np.float32) + i for i, c in enumerate("xyz")}
    write_feather(tmp_path / "a.feather", {**xyz, "laser_number": np.arange(3, dtype=np.uint8)})
    cols = read_feather(tmp_path / "a.feather", ["x"], optional=("laser_number", "intensity"))
    assert sorted(cols) == ["laser_number", "x"]  # only what was asked for; an absent optional is left out
    assert cols["laser_number"].tolist() == [0, 1, 2]
    pts, inten = read_points(tmp_path / "a.feather", intensity=True)
    assert pts.tolist() == [[0, 1, 2], [1, 2, 3], [2, 3, 4]] and inten is None


def test_finite_rows():
    pts = np.array([[0, 0, 0], [np.nan, 0, 0], [1, 2, np.inf]], np.float32)
    assert finite_rows(pts).tolist() == [True, False, False]
