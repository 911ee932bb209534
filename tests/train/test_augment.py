"""Sequence-consistent augmentation: flips, scaling, sparse resize, photometric jitter, determinism."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from motionflow.datasets.synthetic import synthetic_clip
from motionflow.errors import ShapeError
from motionflow.ops.warp import backward_warp
from motionflow.train.augment import AUGMENT_PRESETS, AugmentParams, augment_clip, resize_sparse_flow

GEOMETRY_ONLY = AugmentParams(photometric=False, spatial_prob=0.0, stretch_prob=0.0, h_flip_prob=0.0, v_flip_prob=0.0)


def _ramp_clip(t=3, h=16, w=24, u=2.0, v=1.0):
    ys, xs = np.mgrid[0:h, 0:w]
    frames = np.stack([np.stack([xs * 5, ys * 7, (xs + ys) * 3]) for _ in range(t)]).astype(np.uint8)
    flow = np.zeros((t - 1, 2, h, w), np.float32)
    flow[:, 0], flow[:, 1] = u, v
    return frames, flow, np.ones((t - 1, h, w), bool)


def test_horizontal_flip_mirrors_every_frame_and_negates_u():
    frames, flow, valid = _ramp_clip()
    p = replace(GEOMETRY_ONLY, crop_size=(16, 24), h_flip_prob=1.0)
    f, fl, va = augment_clip(frames, flow, valid, p, np.random.default_rng(0))
    assert torch.equal(f, torch.as_tensor(frames).float().flip(-1))
    assert torch.all(fl[:, 0] == -2.0) and torch.all(fl[:, 1] == 1.0)
    assert va.all()


def test_vertical_flip_negates_v():
    frames, flow, valid = _ramp_clip()
    p = replace(GEOMETRY_ONLY, crop_size=(16, 24), v_flip_prob=1.0)
    f, fl, _ = augment_clip(frames, flow, valid, p, np.random.default_rng(0))
    assert torch.equal(f, torch.as_tensor(frames).float().flip(-2))
    assert torch.all(fl[:, 0] == 2.0) and torch.all(fl[:, 1] == -1.0)


def test_do_flip_false_never_flips():
    frames, flow, valid = _ramp_clip()
    p = replace(GEOMETRY_ONLY, crop_size=(16, 24), h_flip_prob=1.0, v_flip_prob=1.0, do_flip=False)
    f, fl, _ = augment_clip(frames, flow, valid, p, np.random.default_rng(0))
    assert torch.equal(f, torch.as_tensor(frames).float()) and torch.all(fl[:, 0] == 2.0)


def test_scaling_rescales_flow_vectors():
    frames, flow, valid = _ramp_clip(h=16, w=24, u=2.0, v=-1.0)
    # scale exactly 2 (log2 range [1, 1]) without stretch (the crop keeps the minimum scale below 2)
    p = replace(GEOMETRY_ONLY, crop_size=(24, 40), spatial_prob=1.0, min_scale=1.0, max_scale=1.0)
    f, fl, va = augment_clip(frames, flow, valid, p, np.random.default_rng(0))
    assert f.shape == (3, 3, 24, 40) and fl.shape == (2, 2, 24, 40)
    assert torch.allclose(fl[:, 0], torch.full((2, 24, 40), 4.0)) and torch.allclose(fl[:, 1], torch.full((2, 24, 40), -2.0))
    assert va.all()


def test_stretch_scales_axes_independently():
    frames, flow, valid = _ramp_clip(h=64, w=64, u=1.0, v=1.0)
    p = replace(GEOMETRY_ONLY, crop_size=(32, 32), spatial_prob=1.0, stretch_prob=1.0, min_scale=0.0, max_scale=0.0)
    _, fl, _ = augment_clip(frames, flow, valid, p, np.random.default_rng(3))
    sx, sy = float(fl[0, 0].mean()), float(fl[0, 1].mean())
    assert 2 ** -0.2 <= sx <= 2 ** 0.2 and 2 ** -0.2 <= sy <= 2 ** 0.2 and abs(sx - sy) > 1e-3


def test_small_clips_are_upscaled_to_fit_the_crop():
    frames, flow, valid = _ramp_clip(h=16, w=24)
    p = replace(GEOMETRY_ONLY, crop_size=(32, 32))  # spatial_prob 0, but the clip is smaller than the crop
    f, fl, _ = augment_clip(frames, flow, valid, p, np.random.default_rng(0))
    assert f.shape[-2:] == (32, 32)
    assert float(fl[0, 0].mean()) > 2.0 * (33 / 24) - 1e-4  # scaled by at least (crop + 1) / width


def test_geometric_augmentation_keeps_flow_consistent_with_frames():
    """Oracle: warping frame 1 back with the augmented flow reproduces frame 0 (non-occluded pixels)."""
    clip = synthetic_clip(num_frames=2, size=(96, 128), seed=4, max_motion=3.0)
    vis = ~clip.occluded
    rng = np.random.default_rng(11)
    p = replace(AUGMENT_PRESETS["sintel"], photometric=False, h_flip_prob=1.0, v_flip_prob=1.0, spatial_prob=1.0, crop_size=(96, 120))
    f, fl, va = augment_clip(clip.frames, clip.flow, vis, p, rng)
    warped, inside = backward_warp(f[1:2], fl[0:1])
    mask = va[0] & inside[0]
    err_aug = (warped[0] - f[0]).abs().mean(0)[mask].mean()
    # the same frames with the flow NOT flipped back (u, v of the wrong sign) must be far worse
    wrong, inside_w = backward_warp(f[1:2], -fl[0:1])
    err_wrong = (wrong[0] - f[0]).abs().mean(0)[va[0] & inside_w[0]].mean()
    assert mask.float().mean() > 0.5
    assert float(err_aug) < 6.0 and float(err_wrong) > 2 * float(err_aug)


def test_sparse_resize_scatters_valid_vectors_like_raft():
    flow = torch.zeros(1, 2, 4, 4)
    valid = torch.zeros(1, 4, 4, dtype=torch.bool)
    flow[0, :, 1, 1] = torch.tensor([1.0, 2.0])  # (x=1, y=1) -> (2, 2), vector (2, 4)
    valid[0, 1, 1] = True
    flow[0, :, 0, 3] = torch.tensor([5.0, 5.0])  # (x=3, y=0) -> y = 0: dropped (RAFT keeps only yy > 0)
    valid[0, 0, 3] = True
    out, out_valid = resize_sparse_flow(flow, valid, 2.0, 2.0)
    assert out.shape == (1, 2, 8, 8) and int(out_valid.sum()) == 1
    assert out_valid[0, 2, 2] and torch.equal(out[0, :, 2, 2], torch.tensor([2.0, 4.0]))
    assert float(out.abs().sum()) == 6.0  # nothing interpolated anywhere else


def test_sparse_preset_never_invents_ground_truth():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (2, 3, 60, 80), dtype=np.uint8)
    flow = rng.normal(0, 3, (1, 2, 60, 80)).astype(np.float32)
    valid = rng.random((1, 60, 80)) < 0.15
    p = AUGMENT_PRESETS["kitti-mix"].with_crop((48, 64))
    for seed in range(5):
        f, fl, va = augment_clip(frames, flow, valid, p, np.random.default_rng(seed))
        assert f.shape == (2, 3, 48, 64)
        assert torch.all(fl[:, :, ~va[0]] == 0)  # no vector where there is no ground truth
        assert 0 < int(va.sum()) <= int(valid.sum())


def test_colour_jitter_is_shared_by_all_frames_unless_asymmetric():
    frames = np.repeat(np.random.default_rng(0).integers(30, 200, (1, 3, 32, 32), dtype=np.uint8), 3, axis=0)
    flow = np.zeros((2, 2, 32, 32), np.float32)
    valid = np.ones((2, 32, 32), bool)
    p = replace(GEOMETRY_ONLY, photometric=True, eraser_prob=0.0, asymmetric_prob=0.0, crop_size=(32, 32))
    f, _, _ = augment_clip(frames, flow, valid, p, np.random.default_rng(5))
    assert torch.equal(f[0], f[1]) and torch.equal(f[1], f[2])
    assert not torch.equal(f[0], torch.as_tensor(frames[0]).float())
    p = replace(p, asymmetric_prob=1.0)
    f, _, _ = augment_clip(frames, flow, valid, p, np.random.default_rng(5))
    assert not torch.equal(f[0], f[1])


def test_brightness_only_jitter_multiplies_like_torchvision():
    frames = np.random.default_rng(1).integers(20, 120, (2, 3, 16, 16), dtype=np.uint8)
    p = replace(GEOMETRY_ONLY, photometric=True, eraser_prob=0.0, asymmetric_prob=0.0, contrast=0.0, saturation=0.0,
                hue=0.0, crop_size=(16, 16))
    f, _, _ = augment_clip(frames, np.zeros((1, 2, 16, 16), np.float32), np.ones((1, 16, 16), bool), p, np.random.default_rng(2))
    ratio = f / torch.as_tensor(frames).float()
    factor = float(ratio.median())
    assert 0.6 <= factor <= 1.4 and abs(factor - 1) > 1e-3
    assert torch.allclose(f, torch.round(torch.as_tensor(frames).float() / 255 * factor * 255), atol=1.0)


def test_eraser_never_touches_the_first_frame():
    frames = np.full((3, 3, 120, 120), 10, np.uint8)
    frames[:, :, :60] = 200
    p = replace(GEOMETRY_ONLY, photometric=True, eraser_prob=1.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0,
                crop_size=(120, 120))
    f, _, _ = augment_clip(frames, np.zeros((2, 2, 120, 120), np.float32), np.ones((2, 120, 120), bool), p, np.random.default_rng(0))
    assert torch.equal(f[0], torch.as_tensor(frames[0]).float())
    assert not torch.equal(f[1], torch.as_tensor(frames[1]).float()) and not torch.equal(f[2], torch.as_tensor(frames[2]).float())


def test_same_generator_seed_same_clip():
    clip = synthetic_clip(num_frames=3, size=(64, 80), seed=1)
    p = AUGMENT_PRESETS["sintel"].with_crop((48, 64))
    a = augment_clip(clip.frames, clip.flow, clip.valid, p, np.random.default_rng(7))
    b = augment_clip(clip.frames, clip.flow, clip.valid, p, np.random.default_rng(7))
    c = augment_clip(clip.frames, clip.flow, clip.valid, p, np.random.default_rng(8))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_bad_inputs_raise():
    with pytest.raises(ShapeError, match=r"frames: expected \(T, 3, H, W\)"):
        augment_clip(np.zeros((2, 16, 16)), np.zeros((1, 2, 16, 16)), np.ones((1, 16, 16), bool), GEOMETRY_ONLY, np.random.default_rng(0))
    with pytest.raises(ShapeError, match="flow: expected"):
        augment_clip(np.zeros((2, 3, 16, 16)), np.zeros((1, 2, 8, 16)), np.ones((1, 8, 16), bool), GEOMETRY_ONLY, np.random.default_rng(0))
