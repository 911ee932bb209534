"""OpenCV baselines (ReynoldsFlow: test_reynolds.py)."""

import numpy as np
import pytest
import torch

from motionflow.classical.opencv import OpenCVDIS, OpenCVFarneback
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


@pytest.mark.parametrize("method", [OpenCVDIS(), OpenCVFarneback()])
def test_flow_grey_is_the_pair_step_of_the_method(method):
    frames = _shifted_pair()
    grey = frames[0, :, 0].round().to(torch.uint8).numpy()  # grey RGB: luma = the channel
    np.testing.assert_array_equal(method.flow_grey(grey[0], grey[1]), method(frames).flow[0, 0].permute(1, 2, 0).numpy())
