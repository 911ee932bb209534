"""Rerun recordings, read back with rerun's own reader (rerun.chunk.RrdReader)."""

import sys

import numpy as np
import pytest

from motionflow.errors import MissingDependencyError
from motionflow.geometry import ego_flow
from motionflow.viz.rerun_log import STATIC_RGB, log_optical_flow, log_scene_flow, recording


def _read(path):
    """{entity path: [record batches]} of a .rrd file."""
    from rerun.chunk import RrdReader

    out = {}
    for chunk in RrdReader(path).stream():
        out.setdefault(chunk.entity_path, []).append(chunk.to_record_batch())
    return out


def _column(batches, name):
    return [row for b in batches for row in b.column(name).to_pylist()]


def _rgb(packed):
    """rerun stores colours as RGBA packed in a uint32."""
    return [(c >> 24) & 255 for c in packed], [(c >> 16) & 255 for c in packed], [(c >> 8) & 255 for c in packed]


def test_scene_flow_recording_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    pc1 = rng.uniform(-10, 10, (200, 3)).astype(np.float32)
    T = np.eye(4)
    T[0, 3] = 1.0  # the ego vehicle drives 1 m forward
    flow = ego_flow(pc1, T)
    flow[:20, 1] += 0.8  # 20 points move relative to the world
    labels = np.full(200, -1)
    labels[:20] = 0
    gt = flow.copy()
    gt[:20, 1] += 0.1
    path = tmp_path / "lidar.rrd"
    with recording(path) as rec:
        log_scene_flow(rec, 3, pc1, pc1 + flow, flow, gt=gt, ego_motion=T, labels=labels, metrics={"epe3d": 0.01})
    data = _read(path)
    assert {"/lidar/pc1", "/lidar/pc2", "/lidar/flow", "/lidar/clusters", "/lidar/cluster_motion", "/lidar/gt_flow",
            "/lidar/error", "/metrics/epe3d"} <= set(data)
    positions = np.array(_column(data["/lidar/pc1"], "Points3D:positions")[0])
    np.testing.assert_allclose(positions, pc1, atol=1e-6)
    assert _column(data["/lidar/pc1"], "sample") == [3]
    r, g, b = _rgb(_column(data["/lidar/pc1"], "Points3D:colors")[0])
    assert (r[50], g[50], b[50]) == STATIC_RGB  # a static point: grey although its flow is 1 m (ego)
    assert (r[0], g[0], b[0]) != STATIC_RGB
    # arrows only for the 20 movers, with the full flow (pc1 + arrow lands on pc2)
    vectors = np.array(_column(data["/lidar/flow"], "Arrows3D:vectors")[0])
    np.testing.assert_allclose(vectors, flow[:20], atol=1e-6)
    motion = np.array(_column(data["/lidar/cluster_motion"], "Arrows3D:vectors")[0])
    np.testing.assert_allclose(motion, [[0.0, 0.8, 0.0]], atol=1e-5)  # mean motion relative to the world
    assert len(_column(data["/lidar/error"], "Points3D:positions")[0]) == 200
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lidar.rrd"]  # no temporary file left


def test_optical_flow_recording_over_time(tmp_path):
    frames = [np.full((64, 80, 3), 40 * i, np.uint8) for i in range(3)]
    flows = [np.full((64, 80, 2), float(i + 1)) for i in range(2)]
    path = tmp_path / "video.rrd"
    with recording(path) as rec:
        for i, flow in enumerate(flows):
            log_optical_flow(rec, i, frames[i], flow, max_flow=4.0)
    data = _read(path)
    assert _column(data["/video/frame"], "frame") == [0, 1] and _column(data["/video/flow"], "frame") == [0, 1]
    assert len(data["/legend/color_wheel"]) == 1  # logged once, statically
    assert _column(data["/video/max_flow_px"], "Scalars:scalars") == [[4.0], [4.0]]


def test_failed_recording_leaves_no_file_and_missing_rerun_is_named(tmp_path, monkeypatch):
    path = tmp_path / "x.rrd"
    with pytest.raises(RuntimeError):
        with recording(path):
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setitem(sys.modules, "rerun", None)
    with pytest.raises(MissingDependencyError, match=r"pip install rerun-sdk"):
        with recording(path):
            pass
