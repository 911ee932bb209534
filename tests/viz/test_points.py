"""Scene-flow pictures (matplotlib, the viz extra): what is coloured, arrows, panels, errors."""

import subprocess
import sys

import numpy as np
import pytest

from motionflow.errors import MissingDependencyError, ShapeError
from motionflow.geometry import ego_flow
from motionflow.viz import scene_flow_picture, sweeps_picture
from motionflow.viz.points import result_overlays


def _scene(seed=0):
    """A static ring of posts around the sensor plus one car-sized cluster moving 1 m along +y."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 2 * np.pi, 1500)
    radius = rng.uniform(6, 18, 1500)
    static = np.stack([radius * np.cos(angle), radius * np.sin(angle), rng.uniform(0, 2, 1500)], 1)
    car = rng.uniform([8, -1, 0], [12, 1, 1.5], (300, 3))
    points = np.concatenate([static, car])
    labels = np.concatenate([np.full(1500, -1), np.zeros(300, int)])
    motion = np.zeros_like(points)
    motion[1500:, 1] = 1.0
    return points, motion, labels


def _colourful(image):
    """Pixels with a clearly non-grey colour (saturation), excluding the crimson of the arrows."""
    img = image.astype(int)
    saturated = img.max(-1) - img.min(-1) > 60
    crimson = (img[..., 0] > 180) & (img[..., 1] < 80) & (img[..., 2] < 100)
    return saturated & ~crimson


def _crimson(image):
    img = image.astype(int)
    return (img[..., 0] > 180) & (img[..., 1] < 80) & (img[..., 2] < 100)


def test_ego_motion_does_not_paint_the_scene():
    points, motion, _ = _scene()
    T = np.eye(4)  # the ego vehicle turns 0.03 rad and drives 1.2 m
    T[:2, :2] = [[np.cos(0.03), -np.sin(0.03)], [np.sin(0.03), np.cos(0.03)]]
    T[:3, 3] = (1.2, 0.1, 0.0)
    flow = ego_flow(points, T) + motion  # the car moves, the ego vehicle drives
    known = scene_flow_picture(points, flow, ego_motion=T, extent=20, panel_inches=4)
    unknown = scene_flow_picture(points, flow, extent=20, panel_inches=4)
    static_only = scene_flow_picture(points[:1500], flow[:1500], ego_motion=T, extent=20, panel_inches=4)
    panel = slice(0, int(known.shape[1] * 0.7))  # left of the colour bar
    n_known = _colourful(known[:, panel]).sum()
    n_unknown = _colourful(unknown[:, panel]).sum()
    assert _colourful(static_only[:, panel]).sum() == 0  # a static world seen from a moving car: all grey
    assert n_known > 200  # the moving car is coloured
    assert n_unknown > 5 * n_known  # without the ego motion every point looks like it moves


def test_cluster_arrows_gt_and_error_panels():
    points, motion, labels = _scene()
    one = scene_flow_picture(points, motion, extent=20, panel_inches=4)
    arrows = scene_flow_picture(points, motion, labels=labels, extent=20, panel_inches=4)
    assert _crimson(one).sum() == 0 and _crimson(arrows).sum() > 50
    three = scene_flow_picture(points, motion, gt=motion * 0.5, extent=20, panel_inches=4)
    assert three.shape[1] > 2.5 * one.shape[1] * 0.7 and three.shape[0] == one.shape[0]
    side = scene_flow_picture(points, motion, view="side", extent=20, panel_inches=4)
    assert side.shape[1] > side.shape[0] and _colourful(side).sum() > 100
    # labels scattered back to the caller's points when preprocessing removed some
    class Result:
        extras = {"labels1": np.array([3, 4]), "keep1": np.array([False, True, True]), "ego_motion": np.eye(4)}

    got = result_overlays(Result(), 3)
    assert got["labels"].tolist() == [-1, 3, 4] and np.array_equal(got["ego_motion"], np.eye(4))


def test_scene_flow_picture_rejects_bad_input():
    points, motion, _ = _scene()
    with pytest.raises(ShapeError, match="flow: expected 1800 rows"):
        scene_flow_picture(points, motion[:10])
    with pytest.raises(ShapeError, match="view"):
        scene_flow_picture(points, motion, view="top")
    with pytest.raises(ShapeError, match="extent"):
        scene_flow_picture(points, motion, extent=(1, 0, 0, 1))
    with pytest.raises(ShapeError, match="labels"):
        scene_flow_picture(points, motion, labels=np.zeros(3))


def test_sweeps_picture_colours_each_sweep():
    points, _, _ = _scene()
    sweep = np.repeat([0, 1, 2], 600)
    image = sweeps_picture(points, sweep, extent=20)
    assert image.ndim == 3 and _colourful(image).sum() > 500


def test_missing_matplotlib_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    points, motion, _ = _scene()
    with pytest.raises(MissingDependencyError, match=r"pip install matplotlib"):
        scene_flow_picture(points, motion)


def test_package_imports_and_runs_without_the_optional_viewers():
    code = (
        "import sys\n"
        "for m in ('matplotlib', 'rerun', 'av'): sys.modules[m] = None\n"
        "import numpy as np, motionflow, motionflow.viz, motionflow.viz.page, motionflow.viz.rerun_log\n"
        "import motionflow.cli.main\n"
        "from motionflow.viz import flow_picture, kitti_error_picture\n"
        "f = np.ones((64, 64, 2))\n"
        "assert flow_picture(f).shape == (64, 64, 3) and kitti_error_picture(f, f).shape[0] >= 64\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_the_view_keeps_a_ground_truth_mover_the_estimate_missed(monkeypatch):
    """The bird's-eye extent follows what moves in the estimate AND in the ground truth: a method that
    misses a far mover (zero flow) must still show it (the demo's zero picture cut it off)."""
    import motionflow.viz.points as P

    rng = np.random.default_rng(0)
    pc1 = np.concatenate([rng.uniform(-12, 12, (2000, 3)), [[1.0, 28.0, 0.5]] * 40 + rng.normal(0, 0.3, (40, 3))])
    pc1[:, 2] = np.abs(pc1[:, 2]) + 0.3
    gt = np.zeros_like(pc1)
    gt[2000:] = [1.0, 0.0, 0.0]  # the mover at y = 28 m
    seen = {}
    extent = P._extent

    def spy(points, focus, ext):
        seen["limits"] = extent(points, focus, ext)
        return seen["limits"]

    monkeypatch.setattr(P, "_extent", spy)
    P.scene_flow_picture(pc1, np.zeros_like(pc1), gt=gt, panel_inches=2.0)
    assert seen["limits"][3] >= 30.0  # 28 m + 3 m to spare, in 5 m steps: 35
    P.scene_flow_picture(pc1, np.zeros_like(pc1), panel_inches=2.0)  # no ground truth: nothing moves
    assert seen["limits"][3] == 15.0  # 90 % of the points (within 12 m) in 5 m steps
