import numpy as np

import motionflow.registry as registry
from motionflow.sceneflow import DEFAULT_METHOD, estimate_scene_flow


def test_default_is_rigid_and_preprocessed_ground_is_not_removed_twice(monkeypatch):
    seen = {}
    real = registry.get_scene_flow_method

    def spy(name, **options):
        seen[name] = dict(options)
        return real("zero")

    monkeypatch.setattr(registry, "get_scene_flow_method", spy)
    rng = np.random.default_rng(0)
    pc = np.c_[rng.uniform(-10, 10, (200, 2)), rng.uniform(-0.5, 2.0, 200)].astype(np.float32)
    assert DEFAULT_METHOD == "rigid"
    res = estimate_scene_flow(pc, pc, ground="height", ground_height=0.0)
    assert seen["rigid"] == {"ground_removal": "none"}
    removed = pc[:, 2] <= 0.0
    assert np.isnan(res.flow[removed]).all() and np.isfinite(res.flow[~removed]).all()
    estimate_scene_flow(pc, pc, method="rigid+nsfp", ground="height", ground_removal="ransac")
    assert seen["rigid+nsfp"] == {"ground_removal": "ransac"}  # an explicit choice is kept
    estimate_scene_flow(pc, pc, method="rigid")
    assert seen["rigid"] == {}  # no preprocessing: the method removes the ground itself
