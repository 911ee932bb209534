"""Rigid (ICP-Flow style) scene flow on synthetic lidar pairs with known box motions."""

from __future__ import annotations

import numpy as np
import pytest

from motionflow.datasets.synthetic import synthetic_lidar_pair
from motionflow.errors import ShapeError, UnknownNameError
from motionflow.geometry import apply_transform, ego_flow, rotation_angle
from motionflow.registry import get_scene_flow_method
from motionflow.sceneflow.rigid import (RigidFlow, RigidNSFP, _attach, histogram_candidates, histogram_translation,
                                       planar_projection)

SCAN = dict(beams=64, azimuths=1024, max_range=30.0)


def _ego_flow(sample):
    return ego_flow(sample.pc1.astype(np.float64), sample.ego_motion)


@pytest.fixture(scope="module")
def scene():
    sample = synthetic_lidar_pair(seed=2, **SCAN)
    result = RigidFlow()(sample.pc1, sample.pc2, ego_motion=sample.ego_motion)
    return sample, result


def test_recovers_every_box_motion_and_the_flow(scene):
    sample, result = scene
    inst = sample.meta["instance1"]
    labels = result.extras["labels1"]
    by_label = {c["src_label"]: c for c in result.extras["clusters"]}
    assert np.allclose(result.extras["ego_motion"], sample.ego_motion)
    for i, box in enumerate(sample.meta["boxes"]):
        pts = inst == i
        lab = np.bincount(labels[pts][labels[pts] >= 0]).argmax()  # the box's main cluster
        assert lab in by_label, f"box {i} (moving={box['moving']}) was not matched"
        T = by_label[lab]["transform_ego"]  # pc1 frame -> pc2 frame
        true = sample.ego_motion @ box["motion"]
        rot_err = rotation_angle(T[:3, :3] @ true[:3, :3].T)
        centre = sample.pc1[pts].astype(np.float64).mean(0, keepdims=True)
        trans_err = np.linalg.norm(apply_transform(centre, T) - apply_transform(centre, true))
        assert rot_err < 1.0, (i, rot_err)
        assert trans_err < 0.05, (i, trans_err)
    epe = np.linalg.norm(result.flow - sample.flow, axis=1)
    assert epe.mean() < 0.03
    # a wrong pipeline (zero object motion = ego flow only) is far off on the moving boxes
    moving = np.isin(inst, [i for i, b in enumerate(sample.meta["boxes"]) if b["moving"]])
    zero_epe = np.linalg.norm(_ego_flow(sample) - sample.flow, axis=1)[moving].mean()
    assert epe[moving].mean() < 0.25 * zero_epe


def test_max_points_never_costs_the_rigid_flow(scene):
    """max_points caps each registration's points; the clustering sees every point and every point keeps
    its cluster's motion (a random 8192-point fit subsample cost 4x in dynamic EPE on real sweeps)."""
    sample, result = scene
    capped = RigidFlow(max_points=8192)(sample.pc1, sample.pc2, ego_motion=sample.ego_motion)
    assert len(sample.pc1) > 6 * 8192 and "fit_points" not in capped.extras
    # 8192 >= the per-cluster caps: the same fit (up to open3d's multi-threaded ICP, not bit-reproducible)
    moving = np.isin(sample.meta["instance1"], [i for i, b in enumerate(sample.meta["boxes"]) if b["moving"]])
    err, err_capped = (np.linalg.norm(f - sample.flow, axis=1) for f in (result.flow, capped.flow))
    assert err_capped.mean() <= 1.1 * err.mean() + 1e-4 and err_capped[moving].mean() <= 1.1 * err[moving].mean() + 1e-3
    tight = RigidFlow(max_points=256)(sample.pc1, sample.pc2, ego_motion=sample.ego_motion)
    assert tight.flow.shape == sample.pc1.shape and np.isfinite(tight.flow).all()
    assert np.linalg.norm(tight.flow - sample.flow, axis=1).mean() < 0.03


def test_result_reports_clusters_and_static_ground(scene):
    sample, result = scene
    assert result.method == "rigid" and result.flow.shape == sample.pc1.shape
    ground = result.extras["labels1"] == -2
    assert ground.mean() > 0.8  # the synthetic world is mostly a ground plane
    # ground points (not attached to a matched cluster) move with the ego motion only
    assert np.allclose(result.flow[ground], _ego_flow(sample)[ground], atol=1e-4)
    for c in result.extras["clusters"]:
        assert c["transform"].shape == (4, 4) and c["stage"] in ("static", "dynamic")
        assert np.allclose(c["transform_ego"], c["transform"] @ sample.ego_motion)


def test_cluster_seen_in_one_sweep_falls_back_to_static_or_nsfp():
    sample = synthetic_lidar_pair(seed=2, **SCAN)
    inst1, inst2 = sample.meta["instance1"], sample.meta["instance2"]
    gone = next(i for i, b in enumerate(sample.meta["boxes"]) if b["moving"])
    pc2 = sample.pc2[inst2 != gone]  # the moving box left the second sweep
    res = RigidFlow()(sample.pc1, pc2, ego_motion=sample.ego_motion)
    pts = inst1 == gone
    assert not res.extras["matched1"][pts].any()
    assert np.allclose(res.flow[pts], _ego_flow(sample)[pts], atol=1e-4)  # static fallback
    hybrid = RigidNSFP(stop={"max_iters": 15, "patience": 5}, nsfp_points=2048)
    res2 = hybrid(sample.pc1, pc2, ego_motion=sample.ego_motion)
    assert res2.method == "rigid+nsfp" and np.isfinite(res2.flow).all()
    refined = res2.extras["refined1"]
    assert refined[pts & (res2.extras["labels1"] != -2)].all()  # unexplained points get the residual
    matched = res2.extras["matched1"]
    assert np.allclose(res2.flow[matched], res.flow[matched], atol=1e-4)  # explained points keep rigid motion
    assert 1 <= res2.extras["nsfp_iterations"] <= 15


def test_degenerate_inputs():
    E = np.eye(4)
    E[0, 3] = 0.5
    one = np.array([[1.0, 2.0, 0.5]], np.float32)
    with pytest.raises(ShapeError, match="at least 10"):
        RigidFlow()(one, one)  # ego motion cannot be estimated from one point
    res = RigidFlow()(one, one + 0.1, ego_motion=E)  # documented: ego flow only
    assert np.allclose(res.flow, [[0.5, 0.0, 0.0]]) and res.extras["clusters"] == []
    rng = np.random.default_rng(0)
    plane = np.c_[rng.uniform(-20, 20, (3000, 2)), rng.normal(0, 0.01, 3000)].astype(np.float32)
    res = RigidFlow()(plane, plane, ego_motion=E)  # all ground
    assert (res.extras["labels1"] == -2).all() and np.allclose(res.flow, [0.5, 0, 0], atol=1e-5)
    sample = synthetic_lidar_pair(seed=0, beams=16, azimuths=256)
    res = RigidFlow(cluster_box=(100, 100, 0, 101, 101, 1))(sample.pc1, sample.pc2, ego_motion=sample.ego_motion)
    assert res.extras["clusters"] == [] and np.allclose(res.flow, _ego_flow(sample), atol=1e-4)  # empty crop
    with pytest.raises(ShapeError, match="both clouds need points"):
        RigidFlow()(np.zeros((0, 3), np.float32), plane, ego_motion=E)


def test_histogram_translation_finds_the_shift():
    rng = np.random.default_rng(1)
    src = rng.uniform([0, 0, 0], [4, 2, 1.5], (400, 3))
    t = np.array([0.8, -0.3, 0.0])
    dst = src[rng.permutation(400)[:350]] + t + rng.normal(0, 0.01, (350, 3))
    est, err = histogram_translation(src, dst, max_translation=2.0)
    assert np.abs(est - t).max() <= 0.05 + 1e-9 and err < 0.05
    static, _ = histogram_translation(src, src + rng.normal(0, 0.01, src.shape), max_translation=2.0)
    assert np.allclose(static, 0)


def test_planar_projection():
    c, s = np.cos(0.1), np.sin(0.1)
    T = np.array([[c, -s, 0, 1.0], [s, c, 0, -2.0], [0, 0, 1, 0.3], [0, 0, 0, 1]])
    pts = np.random.default_rng(0).normal(size=(50, 3))
    P = planar_projection(pts, T)
    assert np.allclose(P[:2], T[:2]) and np.allclose(P[2], [0, 0, 1, 0])


def test_registry_and_options():
    assert isinstance(get_scene_flow_method("rigid"), RigidFlow)
    assert isinstance(get_scene_flow_method("rigid+nsfp"), RigidNSFP)
    with pytest.raises(UnknownNameError, match="ground_removal: expected one of"):
        RigidFlow(ground_removal="magic")
    with pytest.raises(UnknownNameError, match="icp: expected one of"):
        RigidFlow(icp="ndt")
    with pytest.raises(UnknownNameError, match="refine: expected 'unexplained' or 'all'"):
        RigidNSFP(refine="some")
    with pytest.raises(UnknownNameError, match=r"clustering: expected one of \('dbscan', 'hdbscan'\)"):
        RigidFlow(clustering="kmeans")


def _blobs():
    """Two dense 1 m blobs 5 m apart and a few scattered points (noise), fixed seed."""
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, (300, 3))
    b = rng.uniform(0, 1, (200, 3)) + [5.0, 0, 0]
    noise = rng.uniform(-20, 20, (10, 3)) + [0, 0, 30.0]
    return np.concatenate([a, b, noise])


def test_cluster_points_dbscan_orders_by_size():
    from motionflow.sceneflow.clustering import cluster_points

    labels = cluster_points(_blobs(), eps=0.3, min_points=5)
    assert (labels[:300] == 0).all() and (labels[300:500] == 1).all() and (labels[500:] == -1).all()
    with pytest.raises(UnknownNameError, match="cluster_points method: expected one of"):
        cluster_points(_blobs(), method="optics")


def test_cluster_points_hdbscan():
    """ICP-Flow's HDBSCAN (fast-hdbscan, the ``hdbscan`` extra; numba compiles it for about a minute on
    first use; the test extra installs it so CI runs this)."""
    pytest.importorskip("fast_hdbscan")
    from motionflow.sceneflow.clustering import cluster_points

    labels = cluster_points(_blobs(), min_points=20, method="hdbscan")
    assert (labels[:300] == 0).all() and (labels[300:500] == 1).all() and (labels[500:] == -1).all()


def test_inlier_distance_follows_the_point_spacing():
    grid = np.stack(np.meshgrid(np.arange(5) * 0.3, np.arange(5) * 0.3, [0.0]), -1).reshape(-1, 3)
    dense = grid / 6.0  # 0.05 m spacing: ICP-Flow's 0.1 m applies
    assert RigidFlow()._inlier_distance(grid, dense) == pytest.approx(0.3)
    assert RigidFlow()._inlier_distance(dense, dense) == pytest.approx(0.1)
    assert RigidFlow(inlier_spacing=None)._inlier_distance(grid, grid) == pytest.approx(0.1)
    assert RigidFlow(inlier_spacing=2.0)._inlier_distance(grid, grid) == pytest.approx(0.6)


def test_sparse_far_movers_are_matched():
    # a 32-beam x 512 sweep: two cars at about 18 m move 1.1-1.3 m; at their true motion only 12-18 %
    # of their points lie within ICP-Flow's fixed 0.1 m of the other sweep (IoU < 0.2): left static
    sample = synthetic_lidar_pair(seed=2)
    pc1 = apply_transform(sample.pc1.astype(np.float64), sample.ego_motion)
    gt = sample.pc1 + sample.flow - pc1
    dynamic = np.linalg.norm(gt, axis=1) >= 0.05
    errors = {}
    for spacing in (1.0, None):
        res = RigidFlow(inlier_spacing=spacing)(pc1, sample.pc2, ego_motion=np.eye(4))
        errors[spacing] = np.linalg.norm(np.asarray(res.flow) - gt, axis=1)[dynamic].mean()
    assert errors[None] > 0.4  # two of the three movers unmatched (zero flow)
    assert errors[1.0] < 0.2


def test_smoothed_histogram_finds_sparse_movers():
    # two cars of a 32-beam x 512 pair (seed 6), each sampled at different places by the two sweeps: the
    # raw 0.1 m histogram's best candidate is 0.8-1.0 m off (its peaks point the wrong way), the votes
    # summed over 0.5 m find the motion to 0.1 m
    sample = synthetic_lidar_pair(seed=6)
    pc1 = apply_transform(sample.pc1.astype(np.float64), sample.ego_motion)
    gt = sample.pc1 + sample.flow - pc1
    for box in (0, 1):
        in1, in2 = sample.meta["instance1"] == box, sample.meta["instance2"] == box
        src, dst = pc1[in1 & (pc1[:, 2] > 0.3)], sample.pc2[in2 & (sample.pc2[:, 2] > 0.3)].astype(np.float64)
        truth = gt[in1].mean(0)
        raw = histogram_candidates(src, dst, 2.0, smooth_bins=1)[0][0]
        smooth, errors = histogram_candidates(src, dst, 2.0, smooth_bins=5)
        assert np.linalg.norm(raw[:2] - truth[:2]) > 0.7
        assert np.linalg.norm(smooth[0, :2] - truth[:2]) < 0.1
        assert np.all(np.diff(errors) >= 0) and any(np.allclose(c, 0) for c in smooth)  # sorted; zero motion kept


def test_rigid_rejects_bad_histogram_and_inlier_options():
    with pytest.raises(ShapeError, match="hist_smooth >= 1, inlier_spacing > 0 or None and box_floor >= 0, "
                                         "found 0, 1.0, 0.2"):
        RigidFlow(hist_smooth=0)
    with pytest.raises(ShapeError, match="found 5, -1, 0.2"):
        RigidFlow(inlier_spacing=-1)
    with pytest.raises(ShapeError, match="found 5, 1.0, -0.1"):
        RigidFlow(box_floor=-0.1)


def test_attach_gives_near_points_the_matched_cluster_label():
    points = np.array([[0, 0, 0], [5, 0, 0], [0.5, 0, 0], [5.5, 0, 0], [0, 3, 0], [9, 9, 9]], dtype=np.float64)
    labels = np.array([0, 1, -1, -1, -1, -2])
    clustered = labels >= 0
    which = labels == -1
    out = _attach(points, labels, clustered, which, 1.0, matched_labels=np.array([0]))
    # 0.5 m from matched cluster 0: joins it; 0.5 m from unmatched cluster 1 and 3 m from 0: stay -1
    assert out.tolist() == [0, 1, 0, -1, -1, -2]
    assert _attach(points, labels, clustered, which, 0.4, np.array([0, 1])).tolist() == labels.tolist()


def test_unclustered_points_near_a_matched_cluster_move_with_it():
    from scipy.spatial import cKDTree

    sample = synthetic_lidar_pair(seed=4)  # 32 beams: sparse far cars leave an unclustered fringe
    runs = {attach: RigidFlow(attach_ground=None, attach_unclustered=attach)(sample.pc1, sample.pc2,
                                                                            ego_motion=sample.ego_motion)
            for attach in (None, 1.0)}
    labels = runs[None].extras["labels1"]
    matched = {c["src_label"] for c in runs[None].extras["clusters"]}
    left, clustered = labels == -1, labels >= 0
    dist, nn = cKDTree(sample.pc1[clustered]).query(sample.pc1[left], k=1)
    nearest = labels[clustered][nn]
    join = (dist <= 1.0) & np.isin(nearest, list(matched))
    assert join.sum() >= 20
    after = runs[1.0].extras["labels1"][left]
    assert np.array_equal(after[join], nearest[join]) and np.all(after[~join] == -1)
    flow = np.asarray(runs[1.0].flow)[left]
    for lab in np.unique(nearest[join]):  # each attached point moves with its cluster's transform
        T = next(c["transform_ego"] for c in runs[1.0].extras["clusters"] if c["src_label"] == lab)
        sel = join & (nearest == lab)
        assert np.allclose(flow[sel], ego_flow(sample.pc1[left][sel].astype(np.float64), T), atol=1e-4)


def test_a_face_seen_thin_in_one_sweep_passes_the_box_check():
    rng = np.random.default_rng(0)
    face = np.c_[rng.uniform(0, 4, 200), rng.uniform(0, 0.03, 200), rng.uniform(0.3, 1.5, 200)]  # car side
    corner = np.c_[rng.uniform(0, 4, 200), rng.uniform(0, 0.4, 200), rng.uniform(0.3, 1.5, 200)]  # + a corner
    assert RigidFlow()._sane(face, corner + [1.0, 0, 0], radius=2.0)
    assert not RigidFlow(box_floor=0.0)._sane(face, corner + [1.0, 0, 0], radius=2.0)  # ICP-Flow: 0.03 < 0.1 * 0.4
    assert not RigidFlow()._sane(face[:, [1, 0, 2]] * [1, 0.1, 1], corner, radius=2.0)  # 0.4 m vs 4 m: still rejected
