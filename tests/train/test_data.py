"""Dataset terms, published stages, the weighted mixture and the deterministic sharded sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from motionflow.errors import ShapeError, UnknownNameError
from motionflow.train.data import ClipSampler, build_mixture, expand_terms, parse_dataset_spec


def test_parse_weights():
    assert parse_dataset_spec("sintel-clean:100, sintel-final:100,kitti2015:200,synthetic") == [
        ("sintel-clean", 100), ("sintel-final", 100), ("kitti2015", 200), ("synthetic", 1)]
    for bad in ("sintel:0", "sintel:0.5", "sintel:x", "sintel:-2"):
        with pytest.raises(UnknownNameError, match="must be a positive integer repetition factor"):
            parse_dataset_spec(bad)
    with pytest.raises(UnknownNameError, match="at least one"):
        parse_dataset_spec(" , ")


def test_sintel_stage_is_raft_mix_without_the_missing_loaders():
    terms, skipped = expand_terms("stage-sintel")
    assert [(t.label, t.weight, t.augment, dict(t.options)) for t in terms] == [
        ("sintel-clean", 100, "sintel", {"pass_name": "clean", "use_invalid": False}),
        ("sintel-final", 100, "sintel", {"pass_name": "final", "use_invalid": False}),
        ("kitti2015", 200, "kitti-mix", {}),
    ]
    assert len(skipped) == 2 and "5*hd1k" in skipped[0] and "things-clean" in skipped[1]
    terms, _ = expand_terms("stage-sintel:2")
    assert [t.weight for t in terms] == [200, 200, 400]
    assert [t.augment for t in expand_terms("stage-kitti")[0]] == ["kitti"]


def test_unknown_and_loaderless_names():
    with pytest.raises(UnknownNameError, match=r"'things' \(FlyingThings3D.*no loader in motionflow; valid choices: chairs"):
        expand_terms("things")
    with pytest.raises(UnknownNameError, match="nothing left to train on"):
        expand_terms("stage-things")
    with pytest.raises(UnknownNameError, match="unknown training dataset 'av2'"):
        expand_terms("av2")


def test_mixture_repeats_terms_by_weight():
    mix = build_mixture("synthetic:3", frames=3, crop_size=(64, 64), augment=False,
                        synthetic={"num_samples": 2, "size": (64, 64)})
    assert len(mix) == 6
    assert [mix.locate(i) for i in range(6)] == [(0, 0), (0, 1), (0, 0), (0, 1), (0, 0), (0, 1)]
    item = mix[(3, 0)]
    assert item["frames"].shape == (3, 3, 64, 64) and item["flow"].shape == (2, 2, 64, 64)
    assert item["valid"].dtype == torch.bool and item["valid"].all()
    from motionflow.datasets.synthetic import synthetic_clip

    ref = synthetic_clip(num_frames=3, size=(64, 64), seed=1)  # sample 1 of the synthetic set
    assert np.array_equal(item["frames"].numpy(), ref.frames.astype(np.float32))
    assert np.allclose(item["flow"].numpy(), ref.flow)


def test_mixture_needs_t_frame_pairs_loader():
    with pytest.raises(ShapeError, match="too short|smaller than the crop"):
        build_mixture("synthetic", frames=2, crop_size=(128, 128), augment=False, synthetic={"num_samples": 1, "size": (64, 64)})[0]


def test_sampler_shards_equal_the_single_process_batch_and_resume_is_the_same_stream():
    single = ClipSampler(length=10, global_batch=4, seed=3, max_steps=6)
    ranks = [ClipSampler(length=10, global_batch=4, seed=3, rank=r, world_size=2, max_steps=6) for r in range(2)]
    for step, keys in enumerate(single):
        assert ranks[0].keys(step) + ranks[1].keys(step) == keys
    # positions: each epoch is a permutation of the mixture
    stream = [k[0] for keys in ClipSampler(10, 5, seed=3, max_steps=4) for k in keys]
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    assert stream[:10] != stream[10:20]
    resumed = ClipSampler(length=10, global_batch=4, seed=3, start_step=4, max_steps=6)
    assert list(resumed) == list(single)[4:]
    assert len(resumed) == 2
    # augmentation seeds differ between samples and between run seeds
    seeds = [k[1] for keys in single for k in keys]
    assert len(set(seeds)) == len(seeds)
    assert ClipSampler(10, 4, seed=4).keys(0) != single.keys(0)
    with pytest.raises(ShapeError, match="global batch 3 must be divisible by the number of processes 2"):
        ClipSampler(10, 3, world_size=2)


def test_kitti_sparse_ground_truth_through_the_mixture(sample_data, tmp_path):
    """The real KITTI sample in the loader's tree: one annotated pair, sparse-resized under augmentation."""
    src = sample_data / "kitti2015_flow_000000"
    train = tmp_path / "KITTI" / "training"
    (train / "image_2").mkdir(parents=True)
    (train / "flow_occ").mkdir()
    for name in ("000000_10.png", "000000_11.png"):
        (train / "image_2" / name).symlink_to(src / name)
    (train / "flow_occ" / "000000_10.png").symlink_to(src / "flow_gt.png")
    mix = build_mixture("stage-kitti", root=tmp_path, frames=2, crop_size=(288, 960))  # RAFT kitti crop
    raw = mix.loaders[0][0]
    frac = float(raw.valid.mean())
    for seed in range(3):
        item = mix[(0, seed)]
        assert item["frames"].shape == (2, 3, 288, 960)
        v = item["valid"][0]
        # sparse: vectors only at valid pixels, never interpolated between them
        assert torch.all(item["flow"][0][:, ~v] == 0)
        assert 0 < float(v.float().mean()) < 2 * frac + 0.05


def test_sintel_stage_mixes_real_sintel_and_kitti_under_one_root(sample_data, tmp_path):
    """stage-sintel over ROOT/Sintel and ROOT/KITTI (RAFT's folder names), clips of T=3 frames."""
    sintel = sample_data / "sintel_alley_1"
    for sub in ("clean", "final", "flow", "occlusions", "invalid"):
        if (sintel / sub).is_dir():
            (tmp_path / "Sintel" / "training" / sub).mkdir(parents=True)
            (tmp_path / "Sintel" / "training" / sub / "alley_1").symlink_to(sintel / sub)
    kitti = sample_data / "kitti2015_flow_000000"
    train = tmp_path / "KITTI" / "training"
    (train / "image_2").mkdir(parents=True)
    (train / "flow_occ").mkdir()
    for name in ("000000_10.png", "000000_11.png"):
        (train / "image_2" / name).symlink_to(kitti / name)
    (train / "flow_occ" / "000000_10.png").symlink_to(kitti / "flow_gt.png")

    mix = build_mixture("stage-sintel", root=tmp_path, frames=2, crop_size=(128, 256))
    # alley_1 frames 1-4: 3 pairs per pass; one KITTI pair
    assert [len(d) for d in mix.loaders] == [3, 3, 1]
    assert len(mix) == 100 * 3 + 100 * 3 + 200 * 1
    assert "200*kitti2015(1)" in mix.describe() and len(mix.skipped) == 2
    k, i = mix.locate(600)
    assert (k, i) == (2, 0) and mix.params[2].sparse and not mix.params[0].sparse
    item = mix[(5, 1)]
    assert item["frames"].shape == (2, 3, 128, 256) and bool(item["valid"].float().mean() > 0.5)  # dense Sintel
    # T=3 clips: Sintel tiles the scene (every pair has ground truth); KITTI needs its multiview frames
    mix3 = build_mixture("sintel-clean", root=tmp_path, frames=3, crop_size=(128, 256))
    item = mix3[(0, 0)]
    assert item["flow"].shape == (2, 2, 128, 256) and bool(item["valid"][:, :, :].any(dim=(1, 2)).all())


def test_raft_noise_is_seeded_per_clip_and_clamped():
    opts = dict(frames=2, crop_size=(64, 64), augment=False, synthetic={"num_samples": 1, "size": (64, 64)})
    clean = build_mixture("synthetic", **opts)[(0, 5)]["frames"]
    noisy = build_mixture("synthetic", add_noise=True, **opts)
    a, b, c = noisy[(0, 5)]["frames"], noisy[(0, 5)]["frames"], noisy[(0, 6)]["frames"]
    assert torch.equal(a, b) and not torch.equal(a, c)
    d = a - clean
    assert 0 < float(d.std()) < 5.5 and float(a.min()) >= 0 and float(a.max()) <= 255


def test_backward_ground_truth_follows_the_same_augmentation():
    from motionflow.datasets.synthetic import synthetic_clip
    from motionflow.train.data import Mixture, Term

    clip = synthetic_clip(num_frames=3, size=(80, 96), seed=2)
    # a stand-in backward ground truth: for a constant field, backward = -forward must survive augmentation
    clip.flow[:] = np.array([1.5, -0.5], np.float32)[None, :, None, None]
    clip.meta["backward_flow"] = -clip.flow
    mix = Mixture([Term("synthetic-flow", 1, (), "default")], [[clip]], frames=3, crop_size=(64, 64), backward=True)
    seen = set()
    for seed in range(4):
        item = mix[(0, seed)]
        assert item["backward"].shape == (2, 2, 64, 64) and item["backward_valid"].all()
        assert torch.allclose(item["backward"], -item["flow"], atol=1e-5)
        seen.add(round(float(item["flow"][0, 0, 32, 32]), 4))
    assert len(seen) > 1  # the seeds did scale / flip the clip differently
    # without backward ground truth in the sample, the backward masks are all False
    del clip.meta["backward_flow"]
    assert not mix[(0, 0)]["backward_valid"].any()
