"""Flow formats: byte layouts checked against hand-built files, round trips, error paths."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from motionflow.errors import FormatError, ShapeError
from motionflow.io import (
    read_flo,
    read_flow,
    read_kitti_png,
    read_pfm,
    read_pfm_flow,
    write_flow,
    write_pfm,
)


def _rand_flow(h=5, w=7, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(h, w, 2)) * 20).astype(np.float32)


def test_flo_reads_hand_built_bytes(tmp_path):
    # 2 x 3 flow, u = 10*y + x, v = -(10*y + x), written by hand in the Middlebury layout.
    h, w = 2, 3
    vals = []
    for y in range(h):
        for x in range(w):
            vals += [10 * y + x, -(10 * y + x)]
    vals[2 * (1 * w + 2)] = 1e10  # pixel (1, 2) unknown
    data = struct.pack("<fii", 202021.25, w, h) + struct.pack(f"<{len(vals)}f", *vals)
    p = tmp_path / "a.flo"
    p.write_bytes(data)
    flow, valid = read_flow(p)
    assert flow.shape == (2, 3, 2) and flow.dtype == np.float32
    assert flow[1, 1, 0] == 11 and flow[1, 1, 1] == -11 and flow[0, 2, 0] == 2
    assert valid.tolist() == [[True, True, True], [True, True, False]]


@pytest.mark.parametrize("suffix", [".flo", ".png", ".pfm", ".npy", ".npz"])
def test_round_trip_every_writer(tmp_path, suffix):
    flow = _rand_flow()
    valid = np.ones(flow.shape[:2], bool)
    valid[1, 2] = valid[4, 0] = False
    p = tmp_path / f"f{suffix}"
    write_flow(p, flow, valid)
    back, vback = read_flow(p)
    assert back.shape == flow.shape and back.dtype == np.float32
    np.testing.assert_array_equal(vback, valid)
    tol = 1 / 128 if suffix == ".png" else 0  # KITTI quantises to 1/64 px
    np.testing.assert_allclose(back[valid], flow[valid], atol=tol, rtol=0)
    assert not list(tmp_path.glob(".*tmp*")), "temporary file left behind"


def test_kitti_png_encoding_is_exact(tmp_path):
    cv2 = pytest.importorskip("cv2")
    flow = np.array([[[1.5, -2.25], [0.0, 0.0]]], np.float32)
    valid = np.array([[True, False]])
    p = tmp_path / "k.png"
    write_flow(p, flow, valid)
    raw = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)[:, :, ::-1]  # -> RGB
    assert raw.dtype == np.uint16
    assert raw[0, 0].tolist() == [32768 + 96, 32768 - 144, 1]
    assert raw[0, 1].tolist() == [0, 0, 0]
    f, v = read_kitti_png(p)
    assert f[0, 0].tolist() == [1.5, -2.25] and v.tolist() == [[True, False]]


def test_kitti_png_rejects_8bit(tmp_path):
    cv2 = pytest.importorskip("cv2")
    p = tmp_path / "eight.png"
    cv2.imwrite(str(p), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(FormatError, match="16-bit.*found dtype uint8"):
        read_flow(p)


def test_pfm_bottom_to_top_and_big_endian(tmp_path):
    # 1-channel 2x2, big endian (positive scale), rows stored bottom first.
    data = b"Pf\n2 2\n1.0\n" + struct.pack(">4f", 3, 4, 1, 2)
    p = tmp_path / "a.pfm"
    p.write_bytes(data)
    assert read_pfm(p).tolist() == [[1, 2], [3, 4]]
    arr = np.arange(24, dtype=np.float32).reshape(2, 4, 3)
    write_pfm(tmp_path / "b.pfm", arr)
    np.testing.assert_array_equal(read_pfm(tmp_path / "b.pfm"), arr)
    flow, valid = read_pfm_flow(tmp_path / "b.pfm")
    np.testing.assert_array_equal(flow, arr[:, :, :2])
    assert valid.all()


def test_pfm_errors(tmp_path):
    p = tmp_path / "bad.pfm"
    p.write_bytes(b"P6\n2 2\n-1\n" + bytes(48))
    with pytest.raises(FormatError, match="PFM header"):
        read_pfm(p)
    p.write_bytes(b"PF\n2 2\n-1.0\n" + bytes(40))
    with pytest.raises(FormatError, match="expected 48 data bytes, found 40"):
        read_pfm(p)
    p.write_bytes(b"Pf\n2 2\n-1.0\n" + bytes(16))
    with pytest.raises(FormatError, match="1-channel"):
        read_pfm_flow(p)


def test_flo_errors(tmp_path):
    p = tmp_path / "x.flo"
    p.write_bytes(struct.pack("<fii", 1.0, 2, 2) + bytes(32))
    with pytest.raises(FormatError, match=r"x\.flo.*magic 202021.25.*found 1\.0"):
        read_flo(p)
    p.write_bytes(struct.pack("<fii", 202021.25, 4, 3) + bytes(40))
    with pytest.raises(FormatError, match="4x3 so expected 108 bytes, found 52"):
        read_flo(p)
    p.write_bytes(b"PIE")
    with pytest.raises(FormatError, match="12 bytes"):
        read_flo(p)
    with pytest.raises(FormatError, match="missing.flo: expected an existing file"):
        read_flow(tmp_path / "missing.flo")
    with pytest.raises(ValueError):  # FormatError is a ValueError
        read_flow(tmp_path / "missing.flo")


def test_unknown_suffix_lists_supported(tmp_path):
    with pytest.raises(FormatError, match=r"\.flo, \.png, \.pfm, \.npy, \.npz.*'\.txt'"):
        read_flow(tmp_path / "a.txt")
    with pytest.raises(FormatError, match="expected a flow file"):
        write_flow(tmp_path / "a.jpg", np.zeros((2, 2, 2)))


def test_write_flow_checks_shapes(tmp_path):
    with pytest.raises(ShapeError, match=r"\(H, W, 2\), found \(2, 4, 4\)"):
        write_flow(tmp_path / "a.flo", np.zeros((2, 4, 4)))
    with pytest.raises(ShapeError, match="valid"):
        write_flow(tmp_path / "a.flo", np.zeros((4, 4, 2)), np.ones((3, 4), bool))


def test_npz_without_flow_key(tmp_path):
    np.savez(tmp_path / "a.npz", other=np.zeros(3))
    with pytest.raises(FormatError, match=r"key 'flow'.*\['other'\]"):
        read_flow(tmp_path / "a.npz")


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "a.flo"
    write_flow(p, np.ones((2, 2, 2)))
    before = p.read_bytes()
    import motionflow.io.atomic as atomic

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_flow(p, np.zeros((2, 2, 2)))
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.flo"]
