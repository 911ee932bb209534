import numpy as np
import pytest
import torch

from motionflow.errors import ShapeError, UnknownNameError
from motionflow.viz import (
    KITTI_ERROR_BINS,
    color_wheel_legend,
    epe_picture,
    error_map,
    flow_picture,
    flow_scale,
    flow_to_color,
    kitti_error_picture,
)
from motionflow.viz.annotate import apply_colormap, colormap, colour_bar, nice_ticks


def _probe(u, v, max_flow=1.0):
    return flow_to_color(np.array([[[u, v]]], dtype=np.float32), max_flow=max_flow)[0, 0].tolist()


def test_probe_vectors_follow_the_middlebury_wheel():
    # hand-derived from the 55-colour Baker wheel: right = index 0 (red), down = index 13.5 (RY
    # segment, G = 255*13/15 blended with 255*14/15), left = index 27 (CB segment 2), up = 40.5 (BM 4.5)
    assert _probe(1, 0) == [255, 0, 0]
    assert _probe(0, 1) == [255, 229, 0]
    assert _probe(-1, 0) == [0, 209, 255]
    assert _probe(0, -1) == [88, 0, 255]


def test_flow_to_color_matches_the_flow_vis_package_on_a_grid():
    import flow_vis  # the reference implementation (test extra)

    # every direction and magnitudes inside, on and beyond the normalisation, in float64 (flow-vis computes
    # in the input's dtype: a float32 grid puts points exactly on |f| = max on either side of the circle)
    u, v = np.meshgrid(np.linspace(-3, 3, 61), np.linspace(-3, 3, 61))
    flow = np.stack([u, v], -1)
    ours = flow_to_color(flow, max_flow=2.0).astype(int)
    ref = flow_vis.flow_uv_to_colors(u / 2.0, v / 2.0).astype(int)
    assert np.abs(ours - ref).max() <= 1
    # default normalisation: the largest magnitude (flow-vis adds 1e-5 to it)
    assert np.abs(flow_to_color(flow).astype(int) - flow_vis.flow_to_color(flow).astype(int)).max() <= 1
    # a plausible wrong wheel (v not negated: up and down swapped) is far off
    swapped = flow_to_color(flow * np.array([1.0, -1.0]), max_flow=2.0).astype(int)
    assert np.abs(swapped - ref).max() > 100


def test_zero_flow_is_white_and_saturation_grows_with_magnitude():
    assert _probe(0, 0) == [255, 255, 255]
    assert _probe(0.5, 0) == [255, 127, 127]  # 1 - 0.5 * (1 - col) for col = (1, 0, 0)
    assert _probe(2.0, 0, max_flow=1.0) == [191, 0, 0]  # outside the unit circle: 0.75 * col


def test_layout_and_default_normalisation():
    flow = np.zeros((2, 4, 5), dtype=np.float32)
    flow[0, 1, 2] = 3.0  # (2, H, W) input is accepted
    img = flow_to_color(torch.from_numpy(flow))
    assert img.shape == (4, 5, 3) and img.dtype == np.uint8
    assert img[1, 2].tolist() == [255, 0, 0]  # the largest vector saturates by default
    assert (flow_to_color(np.full((2, 2, 2), np.nan)) == 0).all()
    with pytest.raises(ShapeError, match=r"\(H, W, 2\)"):
        flow_to_color(np.zeros((3, 4, 5)))


def test_legend_is_white_outside_the_circle():
    legend = color_wheel_legend(33)
    assert legend.shape == (33, 33, 3)
    assert legend[0, 0].tolist() == [255, 255, 255]
    assert legend[16, 16].tolist() == [255, 255, 255]  # centre = zero flow
    assert legend[16, 32].tolist() == [255, 0, 0]  # right edge = pure right at full saturation


def test_flow_scale_is_one_normalisation_for_a_sequence():
    a = np.zeros((10, 10, 2))
    a[..., 0] = np.arange(100).reshape(10, 10) / 10.0  # magnitudes 0 .. 9.9
    b = np.zeros((10, 10, 2))
    b[0, 0] = (30.0, 40.0)  # one 50 px outlier
    assert flow_scale([a, b], percentile=100) == pytest.approx(50.0)
    assert flow_scale([a]) == pytest.approx(np.percentile(np.arange(100) / 10.0, 99))
    valid = np.ones((10, 10), bool)
    valid[0, 0] = False
    assert flow_scale([(b, valid)], percentile=100) == 1.0  # the outlier is invalid; floor 1 px
    assert flow_scale([np.full((4, 4, 2), np.nan)]) == 1.0
    with pytest.raises(ShapeError, match="percentile"):
        flow_scale([a], percentile=0)


def test_flow_picture_carries_the_wheel_and_its_normalisation():
    rng = np.random.default_rng(0)
    flow = rng.normal(0, 3, (96, 128, 2))
    pic = flow_picture(flow, max_flow=20.0)
    plain = flow_to_color(flow, max_flow=20.0)
    size = 24  # max(24, short side / 5)
    # the inset is the colour wheel, top right; away from the legend the picture is the plain colouring
    assert np.array_equal(pic[4:4 + size, 128 - 4 - size:128 - 4], color_wheel_legend(size))
    assert np.array_equal(pic[50:], plain[50:])
    # the normalisation is written under the wheel: dark text pixels where the colouring has none
    text_rows = pic[8 + size:8 + size + 14, 60:]
    assert (text_rows.max(-1) < 90).sum() > 20 and (plain[8 + size:8 + size + 14, 60:].max(-1) < 90).sum() == 0
    # one max_flow means one colour for one motion, whatever else is in the picture
    assert np.array_equal(flow_picture(flow * 0.5, max_flow=10.0)[50:], plain[50:])
    assert np.array_equal(flow_picture(flow, legend=False), flow_to_color(flow))
    small = flow_picture(flow[:40, :40], max_flow=20.0)  # too small for a legend: plain colouring
    assert np.array_equal(small, flow_to_color(flow[:40, :40], max_flow=20.0))


def test_error_map_uses_kitti_bins():
    gt = np.zeros((1, 4, 2), dtype=np.float32)
    gt[..., 0] = 100.0
    pred = gt.copy()
    pred[0, 1, 0] += 0.1  # value = min(0.1/3, 20*0.1/100) = 0.02 -> first bin
    pred[0, 2, 0] += 6.0  # value = min(2, 1.2) = 1.2 -> bin [1, 2)
    pred[0, 3, 0] += 100.0  # value = min(33.3, 20) -> last bin
    valid = np.array([[False, True, True, True]])
    img = error_map(pred, gt, valid, dilate=False)
    assert img[0, 0].tolist() == [0, 0, 0]
    assert img[0, 1].tolist() == [49, 54, 149]
    assert img[0, 2].tolist() == [254, 224, 144]
    assert img[0, 3].tolist() == [165, 0, 38]
    # occluded (valid in flow_occ, not in flow_noc): half brightness, truncated as the devkit's uint8 `*= 0.5`
    half = error_map(pred, gt, valid, noc=np.array([[True, True, False, True]]), dilate=False)
    assert half[0, 2].tolist() == [127, 112, 72] and half[0, 3].tolist() == [165, 0, 38]
    with pytest.raises(ShapeError, match="differs"):
        error_map(pred[:, :2], gt)


def test_error_map_paints_3x3_blocks_like_the_devkit():
    gt = np.zeros((5, 6, 2))
    gt[..., 0] = 10.0
    pred = gt.copy()
    pred[2, 2, 0] += 100.0  # an outlier -> last bin
    valid = np.zeros((5, 6), bool)
    valid[2, 2] = valid[2, 3] = True  # (2, 3) is correct -> first bin, and comes later in raster order
    valid[0, 0] = True  # on the border: the devkit never uses it as a source
    img = error_map(pred, gt, valid)
    red, blue = [165, 0, 38], [49, 54, 149]
    assert img[1:4, 1].tolist() == [red] * 3  # only the outlier's block reaches column 1
    assert img[1:4, 2:5].reshape(-1, 3).tolist() == [blue] * 9  # the later pixel overwrites the overlap
    assert img[0, 0].tolist() == [0, 0, 0] and img[:, 5].max() == 0 and img[4, 0].max() == 0


def test_kitti_error_picture_shows_the_devkit_legend():
    gt = np.zeros((64, 96, 2))
    gt[..., 0] = 10.0
    pred = gt.copy()
    pred[20:30, 20:30, 0] += 50.0  # 100 outlier pixels of 6144
    pic = kitti_error_picture(pred, gt)
    assert pic.shape[0] >= 64 and pic.shape[1] > 96 + 40
    legend = pic[:, 100:]
    for _, _, rgb in KITTI_ERROR_BINS:  # every bin colour appears as a swatch in the legend
        assert (legend == rgb).all(-1).sum() >= 25, rgb
    assert np.array_equal(pic[40:64, :96], error_map(pred, gt)[40:64])


def test_epe_picture_scale_and_colour_bar():
    gt = np.zeros((60, 80, 2))
    pred = gt.copy()
    pred[:, 40:, 0] = 2.0  # right half: 2 px error
    valid = np.ones((60, 80), bool)
    valid[:, :5] = False
    pic = epe_picture(pred, gt, valid, max_epe=4.0)
    lut = colormap("magma")
    assert pic[50, 2].tolist() == [200, 200, 200]  # no ground truth: light grey, not the map's dark end
    assert pic[50, 20].tolist() == lut[0].tolist()  # zero error: darkest
    assert pic[50, 60].tolist() == lut[128].tolist()  # 2 px of 4: the middle of the map
    assert pic.shape[1] > 80 + 20  # the colour bar
    assert np.array_equal(apply_colormap(np.array([0.0, 4.0, 9.0, np.nan]), 4.0)[:3], lut[[0, 255, 255]])


def test_colour_bar_and_ticks():
    assert nice_ticks(1.0) == [0.0, 0.25, 0.5, 0.75, 1.0] or nice_ticks(1.0) == [0.0, 0.5, 1.0]
    assert nice_ticks(7.3) == [0.0, 2.0, 4.0, 6.0]
    bar = colour_bar(200, 5.0, "EPE px")
    lut = colormap("magma")
    column = bar[:, 8]
    top = np.flatnonzero((column == lut[255]).all(-1))
    bottom = np.flatnonzero((column == lut[0]).all(-1))
    assert len(top) and len(bottom) and top.max() < bottom.min()  # brightest at the top
    with pytest.raises(UnknownNameError, match="jet"):
        colormap("jet")
