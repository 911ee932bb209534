"""Forward-backward consistency (Sundaram et al. 2010) on synthetic flows with known occlusions."""

from __future__ import annotations

import pytest
import torch

from motionflow.errors import ShapeError
from motionflow.ops import occlusion_mask


def test_moving_square_occludes_the_background_it_covers():
    h, w = 12, 20
    f_fw = torch.zeros(1, 2, h, w)
    f_bw = torch.zeros(1, 2, h, w)
    f_fw[0, 0, 3:9, 4:10] = 4.0  # square at columns 4..9 moves right by 4 ...
    f_bw[0, 0, 3:9, 8:14] = -4.0  # ... to columns 8..13 in frame t+1
    occ = occlusion_mask(f_fw, f_bw)
    expected = torch.zeros(1, h, w, dtype=torch.bool)
    expected[0, 3:9, 10:14] = True  # background of frame t hidden under the square in frame t+1
    assert torch.equal(occ, expected)


@pytest.mark.parametrize(
    "u_fw,u_bw,occluded",
    [
        (0.0, -0.6, False),  # 0.36 <= 0.5 (alpha2)
        (0.0, -0.8, True),  # 0.64 > 0.5
        (10.0, -9.2, False),  # 0.64 <= 0.01 * (100 + 84.64) + 0.5 = 2.35
        (10.0, -8.0, True),  # 4.0 > 0.01 * (100 + 64) + 0.5 = 2.14
    ],
)
def test_thresholds_are_sundaram_2010(u_fw, u_bw, occluded):
    f_fw = torch.zeros(1, 2, 5, 30)
    f_fw[:, 0] = u_fw
    f_bw = torch.zeros(1, 2, 5, 30)
    f_bw[:, 0] = u_bw
    occ = occlusion_mask(f_fw, f_bw)
    assert bool(occ[0, 2, 5]) is occluded


def test_flow_leaving_the_frame_is_occluded_unless_disabled():
    f_fw = torch.zeros(1, 2, 4, 6)
    f_fw[:, 0] = 2.0
    f_bw = -f_fw.clone()
    occ = occlusion_mask(f_fw, f_bw)
    assert occ[0, :, 4:].all() and not occ[0, :, :4].any()
    assert not occlusion_mask(f_fw, f_bw, out_of_frame=False).any()


def test_occlusion_errors():
    with pytest.raises(ShapeError, match="f_bw: batch and spatial size must match f_fw"):
        occlusion_mask(torch.zeros(1, 2, 4, 6), torch.zeros(1, 2, 4, 5))
    with pytest.raises(ShapeError, match=r"f_fw: expected a flow of shape \(B, 2, H, W\)"):
        occlusion_mask(torch.zeros(2, 4, 6), torch.zeros(1, 2, 4, 6))
