"""OpenCV baselines and Reynolds flow."""

import numpy as np
import pytest
import torch

from motionflow.classical.opencv import OpenCVDIS, OpenCVFarneback
from motionflow.classical.reynolds import ReynoldsFlow, poisson_neumann, reynolds_flow, reynolds_to_rgb
from motionflow.errors import ShapeError, UnknownNameError


def _shifted_pair(dx=2, dy=1, h=64, w=96, seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur((rng.random((h + 20, w + 20)) * 255).astype(np.float32), (0, 0), 2.0)
    tex = (tex - tex.min()) / (np.ptp(tex) + 1e-6) * 255
    a = tex[10 : 10 + h, 10 : 10 + w]
    b = tex[10 - dy : 10 - dy + h, 10 - dx : 10 - dx + w]  # content moves by (+dx, +dy)
    frames = np.stack([a, b])[:, None].repeat(3, 1)
    return torch.from_numpy(frames).float()[None]


@pytest.mark.parametrize("method", [OpenCVDIS(), OpenCVFarneback()])
def test_opencv_baselines_recover_a_translation(method):
    frames = _shifted_pair()
    flow = method(frames).flow
    assert flow.shape == (1, 1, 2, 64, 96)
    inner = flow[0, 0, :, 12:-12, 12:-12]
    assert abs(inner[0].median().item() - 2) < 0.25
    assert abs(inner[1].median().item() - 1) < 0.25


def test_opencv_errors():
    with pytest.raises(UnknownNameError, match="preset 'huge'"):
        OpenCVDIS(preset="huge")
    with pytest.raises(ShapeError, match="T >= 2"):
        OpenCVDIS()(torch.zeros(1, 1, 3, 8, 8))


def test_poisson_solution_satisfies_the_discrete_laplacian():
    rhs = torch.randn(2, 1, 13, 21, dtype=torch.float64)
    phi = poisson_neumann(rhs)
    p = torch.nn.functional.pad(phi, (1, 1, 1, 1), mode="replicate")  # zero-flux borders
    lap = p[..., 1:-1, 2:] + p[..., 1:-1, :-2] + p[..., 2:, 1:-1] + p[..., :-2, 1:-1] - 4 * phi
    torch.testing.assert_close(lap, rhs - rhs.mean(dim=(-2, -1), keepdim=True))
    assert abs(phi.mean().item()) < 1e-10


def test_reynolds_flow_points_along_the_motion_of_a_blob():
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")

    def blob(cx, cy):
        return (200 * torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 50))[None, None].expand(1, 3, 64, 64)

    right = reynolds_flow(blob(30, 32), blob(31.5, 32))[0, :, 28:37, 26:36]
    down = reynolds_flow(blob(32, 30), blob(32, 31.5))[0, :, 26:36, 28:37]
    assert right[0].mean() > 0.3 and right[1].mean().abs() < 0.05 * right[0].mean()
    assert down[1].mean() > 0.3 and down[0].mean().abs() < 0.05 * down[1].mean()
    pred = ReynoldsFlow()(torch.stack([blob(30, 32)[0], blob(31.5, 32)[0]])[None])
    assert pred.flow.shape == (1, 1, 2, 64, 64)


def test_reynolds_rgb_encoding():
    flow = np.zeros((2, 4, 5), np.float32)
    flow[0, 0, 0] = 10.0  # one fast pixel
    frame = np.full((4, 5, 3), 100, np.uint8)
    rgb = reynolds_to_rgb(flow, frame)
    assert rgb.shape == (4, 5, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 2] == 100).all()  # B = grey frame
    assert rgb[1, 1, 0] == 128 and rgb[1, 1, 1] == 128  # zero motion is mid-grey
    assert rgb[0, 0, 0] == 255  # above the 99th percentile saturates
    with pytest.raises(ShapeError, match="frame: expected"):
        reynolds_to_rgb(flow, np.zeros((3, 3, 3), np.uint8))
