import numpy as np
import pytest

from motionflow.errors import ShapeError, UnknownNameError
from motionflow.sceneflow.preprocess import (crop_mask, duplicate_mask, ground_mask_height, ground_mask_ransac,
                                             preprocess_pair, square_box, subsample_mask)


def _scene(seed=0):
    rng = np.random.default_rng(seed)
    ground = np.c_[rng.uniform(-20, 20, (400, 2)), rng.normal(0, 0.02, 400)]
    objects = np.c_[rng.uniform(-20, 20, (200, 2)), rng.uniform(0.5, 2.0, 200)]
    return np.concatenate([ground, objects]).astype(np.float32)


def test_masks_hand_checked():
    p = np.array([[0, 0, 0], [10, 0, 1], [0, 40, 1], [np.nan, 0, 0], [0, 0, 0], [3, 4, 5]], np.float32)
    assert crop_mask(p, box=square_box(35)).tolist() == [True, True, False, False, True, True]
    assert crop_mask(p, radius=5.0).tolist() == [True, False, False, False, True, True]
    assert crop_mask(p, box=(-1, -1, -1, 5, 5, 2)).tolist() == [True, False, False, False, True, False]
    assert duplicate_mask(p[[0, 1, 4, 5]]).tolist() == [True, True, False, True]
    assert ground_mask_height(p, 0.5).tolist() == [True, False, False, True, True, False]
    with pytest.raises(ShapeError, match="crop box: expected"):
        crop_mask(p, box=(1, 1, 1, 0, 0, 0))
    with pytest.raises(ShapeError, match=r"points: expected shape \(N, 3\)"):
        crop_mask(p[:, :2], radius=3)


def test_ransac_ground_finds_the_plane():
    p = _scene()
    g, plane = ground_mask_ransac(p, distance=0.1, seed=0)
    assert g[:400].mean() > 0.95 and g[400:].mean() < 0.05
    n = plane[:3] / np.linalg.norm(plane[:3])
    assert abs(abs(n[2]) - 1) < 1e-2
    wall = np.c_[np.zeros(300), np.random.default_rng(1).uniform(-5, 5, (300, 2))]
    with pytest.raises(ShapeError, match="tilted"):
        ground_mask_ransac(wall)


def test_subsample():
    p = _scene()
    m = subsample_mask(p, 100, seed=3)
    assert m.sum() == 100 and (m == subsample_mask(p, 100, seed=3)).all()
    v = subsample_mask(p, 10_000, method="voxel", voxel_size=5.0)
    cells = np.unique(np.floor(p / 5.0), axis=0)
    assert v.sum() == len(cells)
    with pytest.raises(UnknownNameError, match="random' or 'voxel'"):
        subsample_mask(p, 10, method="grid")


def test_preprocess_pair_reports_and_scatter_keeps_alignment():
    p1 = _scene(0)
    p1[5] = np.nan
    p2 = _scene(1)
    prep = preprocess_pair(p1, p2, box=square_box(15), ground="height", ground_height=0.2)
    r = prep.removed["pc1"]
    assert r["nonfinite"] == 1
    assert r["crop"] == int((crop_mask(p1, box=square_box(15)) == False).sum() - 1)  # noqa: E712
    assert len(prep.pc1) == prep.keep1.sum() == len(p1) - sum(r.values())
    assert np.array_equal(prep.pc1, p1[prep.keep1])
    flow = prep.pc1 * 0 + np.arange(len(prep.pc1))[:, None]  # flow encodes the kept point's rank
    out = prep.scatter(flow)
    assert out.shape == p1.shape
    assert np.array_equal(out[prep.keep1], flow) and np.isnan(out[~prep.keep1]).all()
    # nearest fill copies the nearest kept point's flow; the NaN point stays NaN
    near = prep.scatter(flow, fill="nearest", points=p1)
    assert np.isnan(near[5]).all() and np.isfinite(np.delete(near, 5, 0)).all()
    j = np.flatnonzero(~prep.keep1 & np.isfinite(p1).all(1))[0]
    d = np.linalg.norm(prep.pc1 - p1[j], axis=1)
    assert near[j, 0] == d.argmin()
    T = np.eye(4)
    T[:3, 3] = [1, 2, 3]
    rig = prep.scatter(flow, fill="rigid", points=p1, transform=T)
    assert np.allclose(rig[j], [1, 2, 3])
    assert (prep.scatter(flow, fill="zero")[j] == 0).all()
    with pytest.raises(ShapeError, match=r"scatter flow: expected shape \(\d+, 3\)"):
        prep.scatter(flow[:-1])
    with pytest.raises(ShapeError, match="no points left"):
        preprocess_pair(p1, p2, radius=1e-3)
