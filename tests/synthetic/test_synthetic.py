import numpy as np
import pytest
import torch
import torch.nn.functional as F

from motionflow.datasets.synthetic import synthetic_clip, synthetic_lidar_pair
from motionflow.errors import ShapeError


def _sample(image, flow):
    """Bilinear sample image (3,H,W) at p + flow(p), pixel centres at integers (align_corners)."""
    _, h, w = image.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    grid = torch.stack([(xs + flow[0]) / (w - 1) * 2 - 1, (ys + flow[1]) / (h - 1) * 2 - 1], -1)
    return F.grid_sample(image[None], grid[None], align_corners=True)[0]


def test_clip_is_deterministic_and_shaped():
    a = synthetic_clip(num_frames=3, size=(48, 64), seed=5)
    b = synthetic_clip(num_frames=3, size=(48, 64), seed=5)
    c = synthetic_clip(num_frames=3, size=(48, 64), seed=6)
    assert a.frames.shape == (3, 3, 48, 64) and a.frames.dtype == np.uint8
    assert a.flow.shape == (2, 2, 48, 64) and a.flow.dtype == np.float32
    assert a.occluded.shape == (2, 48, 64) and a.pair_index == (0, 1)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.flow, b.flow)
    assert not np.array_equal(a.frames, c.frames)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_warping_next_frame_by_gt_reproduces_frame_on_visible_pixels(seed):
    clip = synthetic_clip(num_frames=3, size=(96, 128), seed=seed)
    for t in range(2):
        nxt = torch.from_numpy(clip.frames[t + 1]).double()
        cur = torch.from_numpy(clip.frames[t]).double()
        warped = _sample(nxt, torch.from_numpy(clip.flow[t]).double())
        err = (warped - cur).abs().mean(0).numpy()
        visible = ~clip.occluded[t]
        # texture resampling and layer edges leave a small residual; occluded pixels do not match
        assert np.median(err[visible]) < 3.0
        assert err[visible].mean() < 4.0
        # the flow is not trivial: zero flow explains the frame much worse
        zero_err = (nxt - cur).abs().mean(0).numpy()
        assert zero_err[visible].mean() > 3 * err[visible].mean()


def test_occlusion_mask_marks_targets_leaving_the_image():
    clip = synthetic_clip(num_frames=2, size=(64, 80), seed=3, max_motion=6.0)
    ys, xs = np.mgrid[0:64, 0:80]
    tx, ty = xs + clip.flow[0, 0], ys + clip.flow[0, 1]
    outside = (tx < 0) | (tx > 79) | (ty < 0) | (ty > 63)
    assert outside.any()
    assert clip.occluded[0][outside].all()


def test_clip_rejects_bad_arguments():
    with pytest.raises(ShapeError, match="num_frames"):
        synthetic_clip(num_frames=1)
    with pytest.raises(ShapeError, match="size"):
        synthetic_clip(size=(4, 4))


def _apply(T, p):
    return p @ T[:3, :3].T + T[:3, 3]


def test_lidar_pair_flow_is_exact():
    pair = synthetic_lidar_pair(seed=1)
    assert pair.pc1.dtype == np.float32 and pair.flow.shape == pair.pc1.shape
    moved = pair.pc1.astype(np.float64) + pair.flow
    # static points (ground and static boxes) follow the ego motion exactly
    static = np.ones(len(pair.pc1), dtype=bool)
    for b, box in enumerate(pair.meta["boxes"]):
        if box["moving"]:
            static &= pair.meta["instance1"] != b
    np.testing.assert_allclose(moved[static], _apply(pair.ego_motion, pair.pc1[static].astype(np.float64)), atol=1e-4)
    # ground points stay on the ground plane z = 0 of the second ego frame
    assert np.abs(moved[pair.ground1, 2]).max() < 1e-4
    # moving-box points land on the surface of the moved box, and the box really moves
    ego1_from_ego2 = np.linalg.inv(pair.ego_motion)
    any_moving = False
    for b, box in enumerate(pair.meta["boxes"]):
        sel = pair.meta["instance1"] == b
        if not box["moving"] or not sel.any():
            continue
        any_moving = True
        world = _apply(ego1_from_ego2, moved[sel])
        local = _apply(np.linalg.inv(box["motion"] @ box["pose1"]), world)
        ratio = np.abs(local) / (box["size"] / 2)
        np.testing.assert_allclose(ratio.max(axis=1), 1.0, atol=1e-4)
        assert np.linalg.norm(box["motion"][:3, 3]) > 0.3
    assert any_moving


def test_lidar_pair_labels_and_determinism():
    a, b = synthetic_lidar_pair(seed=2), synthetic_lidar_pair(seed=2)
    np.testing.assert_array_equal(a.pc1, b.pc1)
    assert 0.5 < a.ground1.mean() < 1.0 and a.ground2.shape == (len(a.pc2),)
    assert (a.meta["instance1"][~a.ground1] >= 0).all()
    with pytest.raises(ShapeError, match="num_moving"):
        synthetic_lidar_pair(num_boxes=2, num_moving=3)


def test_lidar_sequence_flows_are_exact_between_every_pair_of_sweeps():
    from motionflow.datasets.synthetic import synthetic_lidar_sequence

    seq = synthetic_lidar_sequence(num_sweeps=3, seed=4)
    assert len(seq["clouds"]) == 3 and len(seq["flows"]) == 2 and len(seq["poses"]) == 3
    for t in range(2):
        moved_ego = seq["clouds"][t].astype(np.float64) + seq["flows"][t]
        world = _apply(seq["poses"][t + 1], moved_ego)  # sweep t's points, moved to time t+1, in world
        for b, box in enumerate(seq["boxes"]):
            sel = seq["instances"][t] == b
            if not sel.any():
                continue
            pose_next = np.linalg.matrix_power(box["motion"], t + 1) @ box["pose"]
            local = _apply(np.linalg.inv(pose_next), world[sel])
            np.testing.assert_allclose((np.abs(local) / (box["size"] / 2)).max(axis=1), 1.0, atol=1e-4)
        np.testing.assert_allclose(world[seq["ground"][t], 2], 0.0, atol=1e-4)
    with pytest.raises(ShapeError, match="num_sweeps"):
        synthetic_lidar_sequence(num_sweeps=1)
