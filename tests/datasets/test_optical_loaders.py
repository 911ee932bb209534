"""Optical-flow loaders on tiny trees built in their exact on-disk layouts."""

from __future__ import annotations

import numpy as np
import pytest

from motionflow.datasets import get_dataset
from motionflow.errors import DatasetNotFoundError, FormatError, UnknownNameError
from motionflow.io import write_flow, write_image, write_sintel_mask

H, W = 6, 8


def _img(seed):
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _flow(seed):
    return np.random.default_rng(1000 + seed).normal(size=(H, W, 2)).astype(np.float32) * 3


def make_sintel(root, scenes={"a": 5, "b": 1, "c": 3}, split="training"):
    for scene, n in scenes.items():
        for i in range(1, n + 1):
            for p in ("clean", "final"):
                write_image(root / split / p / scene / f"frame_{i:04d}.png", _img(100 * i + (p == "final")))
            if split == "training" and i < n:
                write_flow(root / split / "flow" / scene / f"frame_{i:04d}.flo", _flow(i))
    return root


def test_sintel_tiles_every_flow_once(tmp_path):
    root = make_sintel(tmp_path)
    ds = get_dataset("sintel", root, split="training", frames=3)
    # scene a: 5 frames -> clips 1-3 and 3-5; scene b (1 frame) -> none; scene c: 3 frames -> 1-3
    assert ds.ids == ["a/frame_0001", "a/frame_0003", "c/frame_0001"]
    s = ds[1]
    assert s.frames.shape == (3, 3, H, W) and s.flow.shape == (2, 2, H, W)
    assert s.pair_index == (0, 1) and s.meta["frame_numbers"] == [3, 4, 5]
    np.testing.assert_array_equal(s.frames[0].transpose(1, 2, 0), _img(300))
    np.testing.assert_array_equal(s.flow[1].transpose(1, 2, 0), _flow(4))
    assert s.occluded is None and s.valid.all()
    # 4-frame clips over 5 frames: 1-4 scores 3 flows, the end-aligned 2-5 scores only 4 -> 5
    ds4 = get_dataset("sintel", root, frames=4, scenes=["a"])
    assert ds4.ids == ["a/frame_0001", "a/frame_0004"]
    last = ds4[1]
    assert last.meta["frame_numbers"] == [2, 3, 4, 5] and last.pair_index == (2,)
    np.testing.assert_array_equal(last.flow[0].transpose(1, 2, 0), _flow(4))


def test_sintel_centered_and_pass_and_masks(tmp_path):
    root = make_sintel(tmp_path, {"a": 4})
    for i in range(1, 4):
        occ = np.zeros((H, W), bool)
        occ[i, :] = True
        write_sintel_mask(root / "training" / "occlusions" / "a" / f"frame_{i:04d}.png", occ)
    inv = np.zeros((H, W), bool)
    inv[:, 0] = True
    write_sintel_mask(root / "training" / "invalid" / "a" / "frame_0002.png", inv)
    ds = get_dataset("sintel", root, frames=3, clips="centered", **{"pass": "final"})
    assert ds.ids == ["a/frame_0001", "a/frame_0002", "a/frame_0003"]
    first, mid = ds[0], ds[1]
    assert first.meta["frame_numbers"] == [1, 2, 3] and first.pair_index == (0,)
    assert mid.meta["frame_numbers"] == [1, 2, 3] and mid.pair_index == (1,)
    assert ds[2].meta["frame_numbers"] == [2, 3, 4] and ds[2].pair_index == (1,)
    np.testing.assert_array_equal(mid.frames[0].transpose(1, 2, 0), _img(101))  # final pass
    assert mid.occluded[0, 2].all() and mid.occluded[0].sum() == W
    assert mid.valid[0].sum() == H * W - H and not mid.valid[0, :, 0].any()
    assert get_dataset("sintel", root, frames=3, clips="centered", use_invalid=False)[1].valid.all()


def test_sintel_test_split_and_errors(tmp_path):
    root = make_sintel(tmp_path, {"a": 3}, split="test")
    s = get_dataset("sintel", root, split="test")[1]
    assert s.flow is None and s.id == "a/frame_0002" and s.pair_index == (0,)
    with pytest.raises(DatasetNotFoundError, match=r"training/clean"):
        get_dataset("sintel", root, split="training")
    with pytest.raises(UnknownNameError, match=r"\['training', 'test'\].*'val'"):
        get_dataset("sintel", root, split="val")
    with pytest.raises(UnknownNameError, match="clean.*final.*'albedo'"):
        get_dataset("sintel", root, split="test", **{"pass": "albedo"})
    with pytest.raises(DatasetNotFoundError, match="nowhere"):
        get_dataset("sintel", tmp_path / "nowhere")


def test_sintel_missing_and_truncated_flow(tmp_path):
    root = make_sintel(tmp_path, {"a": 3})
    (root / "training" / "flow" / "a" / "frame_0002.flo").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"frame_0002\.flo"):
        get_dataset("sintel", root)
    write_flow(root / "training" / "flow" / "a" / "frame_0002.flo", _flow(2))
    p = root / "training" / "flow" / "a" / "frame_0001.flo"
    p.write_bytes(p.read_bytes()[:-8])
    ds = get_dataset("sintel", root)  # construction reads no data
    with pytest.raises(FormatError, match=r"frame_0001\.flo.*expected \d+ bytes"):
        ds[0]
    assert ds[1].id == "a/frame_0002"
    assert len(get_dataset("sintel", root, max_samples=1)) == 1


def make_kitti(root, stems=("000000", "000001"), image_dir="image_2", multiview=(), split="training"):
    for k, s in enumerate(stems):
        for n in (10, 11, *multiview):
            write_image(root / split / image_dir / f"{s}_{n:02d}.png", _img(10 * k + n))
        if split == "training":
            flow = _flow(k)
            occ = np.ones((H, W), bool)
            occ[0] = False
            noc = occ.copy()
            noc[1] = False
            write_flow(root / split / "flow_occ" / f"{s}_10.png", flow, occ)
            write_flow(root / split / "flow_noc" / f"{s}_10.png", flow, noc)
    return root


def test_kitti2015_pairs_and_occlusion(tmp_path):
    root = make_kitti(tmp_path)
    ds = get_dataset("kitti2015", root)
    assert ds.ids == ["000000_10", "000001_10"] and ds.kind == "optical"
    s = ds[1]
    assert s.frames.shape == (2, 3, H, W) and s.pair_index == (0,)
    np.testing.assert_array_equal(s.frames[1].transpose(1, 2, 0), _img(21))
    assert not s.valid[0, 0].any() and s.valid[0, 1:].all()
    assert s.occluded[0, 1].all() and s.occluded[0].sum() == W
    np.testing.assert_allclose(s.flow[0].transpose(1, 2, 0)[1:], _flow(1)[1:], atol=1 / 128)


def test_kitti_multiview_clips(tmp_path):
    root = make_kitti(tmp_path / "base")
    mv = make_kitti(tmp_path / "mv", multiview=(8, 9, 12))
    with pytest.raises(DatasetNotFoundError, match=r"000000_09\.png.*multiview_root"):
        get_dataset("kitti2015", root, frames=3)
    s = get_dataset("kitti2015", root, frames=5, multiview_root=mv)[0]
    assert s.meta["frame_numbers"] == [8, 9, 10, 11, 12] and s.pair_index == (2,)
    np.testing.assert_array_equal(s.frames[0].transpose(1, 2, 0), _img(8))
    assert s.meta["image_paths"][2].startswith(str(root))  # _10 from the base tree
    s3 = get_dataset("kitti2015", mv, frames=3)[0]
    assert s3.meta["frame_numbers"] == [9, 10, 11] and s3.pair_index == (1,) and s3.flow.shape[0] == 1


def test_kitti2012_and_testing(tmp_path):
    root = make_kitti(tmp_path, image_dir="colored_0")
    assert get_dataset("kitti2012", root)[0].flow.shape == (1, 2, H, W)
    with pytest.raises(DatasetNotFoundError, match="image_2"):
        get_dataset("kitti2015", root)
    make_kitti(tmp_path, split="testing")
    t = get_dataset("kitti2015", tmp_path, split="testing")
    assert t.ids == ["000000_10", "000001_10"] and t[0].flow is None


def test_kitti_without_noc(tmp_path):
    root = make_kitti(tmp_path)
    for p in (root / "training" / "flow_noc").iterdir():
        p.unlink()
    assert get_dataset("kitti2015", root)[0].occluded is None


def test_chairs_official_layout_and_split(tmp_path):
    for i in range(1, 5):
        write_image(tmp_path / "data" / f"{i:05d}_img1.ppm", _img(i))
        write_image(tmp_path / "data" / f"{i:05d}_img2.ppm", _img(i + 50))
        write_flow(tmp_path / "data" / f"{i:05d}_flow.flo", _flow(i))
    with pytest.raises(DatasetNotFoundError, match="FlyingChairs_train_val.txt"):
        get_dataset("chairs", tmp_path, split="train")
    (tmp_path / "FlyingChairs_train_val.txt").write_text("1\n2\n1\n2\n")
    assert get_dataset("chairs", tmp_path, split="train").ids == ["00001", "00003"]
    val = get_dataset("chairs", tmp_path)
    assert val.ids == ["00002", "00004"]
    np.testing.assert_array_equal(val[1].flow[0].transpose(1, 2, 0), _flow(4))
    np.testing.assert_array_equal(val[1].frames[1].transpose(1, 2, 0), _img(54))
    assert len(get_dataset("chairs", tmp_path, split="all")) == 4


def test_middlebury(tmp_path):
    for scene in ("Dimetrodon", "Venus"):
        for n in (10, 11):
            write_image(tmp_path / "other-data" / scene / f"frame{n}.png", _img(n))
    f = _flow(0)
    valid = np.ones((H, W), bool)
    valid[2, 3] = False
    write_flow(tmp_path / "other-gt-flow" / "Venus" / "flow10.flo", f, valid)
    ds = get_dataset("middlebury", tmp_path)
    assert ds.ids == ["Venus"]  # Dimetrodon has no GT here
    s = ds[0]
    assert not s.valid[0, 2, 3] and s.valid.sum() == H * W - 1 and s.flow[0, :, 2, 3].tolist() == [0, 0]
    with pytest.raises(DatasetNotFoundError, match="eval-data"):
        get_dataset("middlebury", tmp_path, split="test")


def test_frames_folder_streams_and_indexes(tmp_path):
    for i in (1, 2, 10, 3, 11, 4):  # natural sort: 1 2 3 4 10 11
        write_image(tmp_path / f"f{i}.png", _img(i))
    ds = get_dataset("frames", tmp_path, frames=3)
    # windows 1-3, 3-10, then the end-aligned 4-11 scoring only 10 -> 11
    assert ds.ids == ["f1", "f3", "f10"]
    clips = list(ds)
    assert [c.meta["frame_names"] for c in clips] == [["f1", "f2", "f3"], ["f3", "f4", "f10"], ["f4", "f10", "f11"]]
    assert [c.pair_index for c in clips] == [(0, 1), (0, 1), (1,)]
    for i, c in enumerate(clips):
        np.testing.assert_array_equal(c.frames, ds[i].frames)
    np.testing.assert_array_equal(clips[1].frames[2].transpose(1, 2, 0), _img(10))


def test_frames_errors(tmp_path):
    write_image(tmp_path / "only.png", _img(0))
    with pytest.raises(DatasetNotFoundError, match="at least 2 frames, found 1"):
        get_dataset("frames", tmp_path)
    with pytest.raises(DatasetNotFoundError, match="folder of images"):
        get_dataset("frames", tmp_path / "only.png")


def test_video_clips(tmp_path):
    cv2 = pytest.importorskip("cv2")
    path = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    if not writer.isOpened():
        pytest.skip("no MJPG writer")
    for i in range(5):
        frame = np.full((24, 32, 3), 40 * i, np.uint8)
        writer.write(frame)
    writer.release()
    ds = get_dataset("video", path, frames=2)
    assert len(ds) == 4 and ds.ids == [f"frame_{i:06d}" for i in range(4)]
    clips = list(ds)
    assert len(clips) == 4
    means = [c.frames.mean(axis=(1, 2, 3)) for c in clips]
    np.testing.assert_allclose([m[0] for m in means], [0, 40, 80, 120], atol=3)
    np.testing.assert_allclose(ds[2].frames.mean(axis=(1, 2, 3)), [80, 120], atol=3)
