import numpy as np
import pytest
import torch

from motionflow.errors import ShapeError
from motionflow.viz import color_wheel_legend, error_map, flow_to_color, scene_flow_bev


def _probe(u, v, max_flow=1.0):
    return flow_to_color(np.array([[[u, v]]], dtype=np.float32), max_flow=max_flow)[0, 0].tolist()


def test_probe_vectors_follow_the_middlebury_wheel():
    # hand-derived from the 55-colour Baker wheel: right = index 0 (red), down = index 13.5 (RY
    # segment, G = 255*13/15 blended with 255*14/15), left = index 27 (CB segment 2), up = 40.5 (BM 4.5)
    assert _probe(1, 0) == [255, 0, 0]
    assert _probe(0, 1) == [255, 229, 0]
    assert _probe(-1, 0) == [0, 209, 255]
    assert _probe(0, -1) == [88, 0, 255]


def test_zero_flow_is_white_and_saturation_grows_with_magnitude():
    assert _probe(0, 0) == [255, 255, 255]
    half = _probe(0.5, 0)
    assert half == [255, 127, 127]  # 1 - 0.5 * (1 - col) for col = (1, 0, 0)
    beyond = _probe(2.0, 0, max_flow=1.0)
    assert beyond == [191, 0, 0]  # outside the unit circle: 0.75 * col


def test_layout_and_default_normalisation():
    flow = np.zeros((2, 4, 5), dtype=np.float32)
    flow[0, 1, 2] = 3.0  # (2, H, W) input is accepted
    img = flow_to_color(torch.from_numpy(flow))
    assert img.shape == (4, 5, 3) and img.dtype == np.uint8
    assert img[1, 2].tolist() == [255, 0, 0]  # the largest vector saturates by default
    nan = flow_to_color(np.full((2, 2, 2), np.nan))
    assert (nan == 0).all()
    with pytest.raises(ShapeError, match=r"\(H, W, 2\)"):
        flow_to_color(np.zeros((3, 4, 5)))


def test_legend_is_white_outside_the_circle():
    legend = color_wheel_legend(33)
    assert legend.shape == (33, 33, 3)
    assert legend[0, 0].tolist() == [255, 255, 255]
    assert legend[16, 16].tolist() == [255, 255, 255]  # centre = zero flow
    assert legend[16, 32].tolist() == [255, 0, 0]  # right edge = pure right at full saturation


def test_error_map_uses_kitti_bins():
    gt = np.zeros((1, 4, 2), dtype=np.float32)
    gt[..., 0] = 100.0
    pred = gt.copy()
    pred[0, 1, 0] += 0.1  # value = min(0.1/3, 20*0.1/100) = 0.02 -> first bin
    pred[0, 2, 0] += 6.0  # value = min(2, 1.2) = 1.2 -> bin [1, 2)
    pred[0, 3, 0] += 100.0  # value = min(33.3, 20) -> last bin
    valid = np.array([[False, True, True, True]])
    img = error_map(pred, gt, valid)
    assert img[0, 0].tolist() == [0, 0, 0]
    assert img[0, 1].tolist() == [49, 54, 149]
    assert img[0, 2].tolist() == [254, 224, 144]
    assert img[0, 3].tolist() == [165, 0, 38]
    with pytest.raises(ShapeError, match="differs"):
        error_map(pred[:, :2], gt)


def test_scene_flow_bev_places_and_colours_points():
    points = np.array([[10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [-10.0, -10.0, 0.0]])
    flow = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    img = scene_flow_bev(points, flow, extent=20.0, resolution=1.0, max_flow=1.0, point_size=1)
    assert img.shape == (40, 40, 3)
    # +x is up: row = (20 - 10) = 10, col = 20; moving forward (up in the image) -> "up" colour
    assert img[10, 20].tolist() == [88, 0, 255]
    assert img[20, 10].tolist() == [170, 170, 170]  # static point drawn grey, +y is left
    # moving to -y (right in the image) -> "right" colour
    assert img[30, 30].tolist() == [255, 0, 0]
    assert img.sum() == np.array([88 + 255, 3 * 170, 255]).sum()
    thick = scene_flow_bev(points, flow, extent=20.0, resolution=1.0, max_flow=1.0, point_size=2)
    assert thick[11, 21].tolist() == [88, 0, 255] and (thick.sum(-1) > 0).sum() == 12
    with pytest.raises(ShapeError, match="2 points but 3"):
        scene_flow_bev(points[:2], flow)
