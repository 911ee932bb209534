"""Variational refinement: derivatives, median, resize, and that refinement moves a flow to the truth."""

import numpy as np
import pytest
import torch

from motionflow.classical.matching import to_grey
from motionflow.classical.variational import (
    VariationalParams,
    image_gradient,
    median_filter,
    refine_flow,
    resize_flow,
)
from motionflow.datasets.synthetic import synthetic_clip
from motionflow.errors import ShapeError


def test_image_gradient_matches_numpy_central_differences():
    x = torch.randn(1, 1, 9, 11, dtype=torch.float64)
    dx, dy = image_gradient(x)
    gy, gx = np.gradient(x[0, 0].numpy())  # central inside, one-sided at the border
    np.testing.assert_allclose(dx[0, 0, :, 1:-1].numpy(), gx[:, 1:-1])
    np.testing.assert_allclose(dy[0, 0, 1:-1].numpy(), gy[1:-1])
    # replicated border: half the one-sided difference
    np.testing.assert_allclose(dx[0, 0, :, 0].numpy(), 0.5 * (x[0, 0, :, 1] - x[0, 0, :, 0]).numpy())


def test_median_filter_cpu_fast_path_equals_kornia():
    from kornia.filters import median_blur

    f = torch.randn(2, 2, 17, 23)
    for size in (3, 5):
        ref = median_blur(f, size, border_type="replicate")
        torch.testing.assert_close(median_filter(f, size), ref)
    # an isolated outlier is removed
    g = torch.zeros(1, 2, 9, 9)
    g[0, :, 4, 4] = 100.0
    assert median_filter(g, 5).abs().max() == 0


def test_resize_flow_rescales_vectors():
    f = torch.ones(1, 2, 10, 20)
    f[:, 1] = 2.0
    r = resize_flow(f, (5, 40))
    assert r.shape == (1, 2, 5, 40)
    torch.testing.assert_close(r[:, 0], torch.full((1, 5, 40), 2.0))  # x doubled
    torch.testing.assert_close(r[:, 1], torch.full((1, 5, 40), 1.0))  # y halved


@pytest.mark.parametrize("seed", [0, 3])
def test_refinement_brings_perturbed_flow_to_ground_truth(seed):
    s = synthetic_clip(num_frames=2, size=(64, 96), seed=seed)
    grey = to_grey(torch.from_numpy(s.frames).float())
    g1, g2 = grey[:1], grey[1:]
    gt = torch.from_numpy(s.flow[:1])
    noc = torch.from_numpy(~s.occluded[0])
    gen = torch.Generator().manual_seed(seed)
    init = gt + 1.5 * torch.randn(gt.shape, generator=gen)  # smooth the noise into a low-frequency error
    init = torch.nn.functional.avg_pool2d(init, 9, stride=1, padding=4, count_include_pad=False)
    before = (init - gt).norm(dim=1)[0][noc].mean()
    out = refine_flow(g1, g2, init, VariationalParams(start_level=1))
    after = (out - gt).norm(dim=1)[0][noc].mean()
    assert out.shape == gt.shape
    assert after < 0.5 * before
    assert after < 0.5


def test_refine_flow_rejects_bad_shapes():
    img = torch.zeros(1, 1, 16, 16)
    with pytest.raises(ShapeError, match="flow: expected"):
        refine_flow(img, img, torch.zeros(1, 2, 8, 8))
    with pytest.raises(ShapeError, match="grey images"):
        refine_flow(torch.zeros(1, 3, 16, 16), img, torch.zeros(1, 2, 16, 16))
    with pytest.raises(ShapeError, match="end_level"):
        refine_flow(img, img, torch.zeros(1, 2, 16, 16), VariationalParams(start_level=0, end_level=1))
