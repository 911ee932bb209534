"""Real-data checks on the Argoverse 2 sample pair in ../shared/data (bounded: about a minute of CPU)."""

import numpy as np
import pytest

from motionflow.registry import get_scene_flow_method

AV2 = "av2_sceneflow_7fab2350"


@pytest.fixture(scope="module")
def av2_pair(sample_data):
    from motionflow.datasets import get_dataset
    from motionflow.sceneflow.preprocess import preprocess_pair

    raw = get_dataset("av2", str(sample_data / AV2))[0]
    s = get_dataset("av2", str(sample_data / AV2), compensate_ego=True)[0]
    g1 = s.ground1 if s.ground1 is not None else s.pc1[:, 2] <= 0.3
    g2 = s.ground2 if s.ground2 is not None else s.pc2[:, 2] <= 0.3
    # ego-compensated, ground removed, |x|,|y| <= 35 m, z <= 4 m (bounds FNSF grid), 3072 points each
    prep = preprocess_pair(np.where(g1[:, None], np.nan, s.pc1), np.where(g2[:, None], np.nan, s.pc2),
                           box=(-35, -35, -np.inf, 35, 35, 4.0), max_points=3072, seed=0)
    gt = s.flow[prep.keep1]
    valid = s.valid[prep.keep1] & np.isfinite(gt).all(1)
    return raw, prep.pc1, prep.pc2, gt, valid


def test_ego_motion_icp_matches_the_log_poses(av2_pair, sample_data):
    from motionflow.sceneflow.ego import estimate_ego_motion

    raw = av2_pair[0]
    truth = np.load(sample_data / AV2 / "ego_motion.npz")
    T_true = truth["ego_motion"].reshape(4, 4).astype(np.float64)
    est = estimate_ego_motion(raw.pc1, raw.pc2)  # full clouds, ground included
    assert np.linalg.norm(est.transform[:3, 3] - T_true[:3, 3]) < 0.02  # the ego moves 6.5 cm here
    cos = (np.trace(est.transform[:3, :3].T @ T_true[:3, :3]) - 1) / 2
    assert np.degrees(np.arccos(min(1.0, cos))) < 0.1


@pytest.mark.slow
def test_every_method_beats_nearest_neighbour(av2_pair):
    _, pc1, pc2, gt, valid = av2_pair

    def epe(name, **opts):
        res = get_scene_flow_method(name, num_threads=1, **opts)(pc1, pc2)
        return float(np.linalg.norm(res.flow[valid] - gt[valid], axis=1).mean())

    zero, nn = epe("zero"), epe("nn")
    scores = {
        "icp": epe("icp"),
        "fnsf": epe("fnsf"),
        "nsfp": epe("nsfp", stop=dict(max_iters=100, check_every=10)),
        "scoop": epe("scoop", stop=dict(max_iters=100)),
    }
    assert zero < 0.03 and nn > 0.15, (zero, nn)  # the sample is ego-compensated: most points are static
    for name, value in scores.items():
        assert value < 0.5 * nn, (name, value, nn)
