"""``motionflow train --model scoop``: SCOOP's self-supervised training of the point-feature net on CPU."""

from __future__ import annotations

import argparse
import csv
import json

import numpy as np
import pytest
import torch

from motionflow.train import config_from_dict, resume_config, train
from motionflow.train.config import ConfigError

#: tiny synthetic lidar pairs: 16 beams x 256 azimuths (about 200 box points per sweep), 128 points per cloud
TINY = dict(model="scoop", dataset="synthetic-lidar", synthetic={"num_samples": 2, "beams": 16, "azimuths": 256},
            batch_size=2, log_every=1, checkpoint_every=2, progress=False, model_options={"points": 128})


def _log(out):
    with open(out / "log.csv", newline="") as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def test_config_defaults_schedule_and_refusals():
    cfg = config_from_dict({"model": "scoop", "dataset": "synthetic-lidar"})
    assert (cfg.lr, cfg.batch_size, cfg.max_steps) == (1e-3, 4, 10000)  # train_scoop.py: Adam 1e-3, batch 4
    kv = config_from_dict({"schedule": "scoop-kitti-v"})
    assert (kv.model, kv.dataset, kv.max_steps, kv.batch_size) == ("scoop", "kitti-sf-flownet3d", 10000, 4)
    assert kv.model_options["split"] == "scoop-kitti-v" and kv.model_options["lr_decay_step"] == 8500
    with pytest.raises(ConfigError, match=r"unknown scoop options \['nb_points'\]"):
        config_from_dict({"model": "scoop", "dataset": "synthetic-lidar", "model_options": {"nb_points": 2048}})
    with pytest.raises(ConfigError, match="scoop trains on scene-flow pairs, 'sintel' is not one"):
        config_from_dict({"model": "scoop", "dataset": "sintel"})
    with pytest.raises(ConfigError, match=r"model_options.points': expected an integer >= 33"):
        config_from_dict({"model": "scoop", "dataset": "pairs", "model_options": {"points": 16}})


def test_kitti_v_split_is_the_100_pairs_outside_scoop_test(tmp_path):
    from motionflow.datasets import get_dataset

    for i in range(150):
        np.savez(tmp_path / f"{i:06d}.npz", pos1=np.zeros((2, 3), np.float32), pos2=np.zeros((2, 3), np.float32),
                 gt=np.zeros((2, 3), np.float32))
    kv = get_dataset("kitti-sf-flownet3d", tmp_path, split="scoop-kitti-v")
    test = get_dataset("kitti-sf-flownet3d", tmp_path, split="scoop-test")
    assert len(kv) == 100 and len(test) == 50 and not set(kv.ids) & set(test.ids)
    assert kv.ids[:6] == ["000000", "000002", "000003", "000004", "000006", "000009"]  # 1, 5, 7, 8 are test pairs


def test_smoke_run_resume_and_checkpoints_that_scoop_loads(tmp_path):
    from motionflow.registry import get_scene_flow_method
    from motionflow.sceneflow.point_features import read_point_feature_checkpoint

    full = train(dict(TINY, out=str(tmp_path / "full"), max_steps=4))
    rows = _log(tmp_path / "full")
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and all(np.isfinite(r["loss"]) for r in rows)
    for r in rows:  # the logged terms add up to the official total
        assert abs(r["loss"] - (r["recon"] + 0.1 * r["conf"] + 10 * r["smooth"])) < 1e-4 * r["loss"]
    assert 0 < rows[0]["epe"] < 5  # initial-flow EPE against the synthetic ground truth
    # interrupted after 2 steps and resumed: the same steps as the uninterrupted run
    train(dict(TINY, out=str(tmp_path / "part"), max_steps=4), stop_at=2)
    train(resume_config(tmp_path / "part"), resume=True)
    assert [r["loss"] for r in _log(tmp_path / "part")] == [r["loss"] for r in rows]
    # both weights files are scoop checkpoints; model.tar is SCOOP's own layout (args = train_scoop.py options)
    tar = read_point_feature_checkpoint(tmp_path / "full" / "model.tar")
    assert tar.layout == "scoop" and tar.args["nb_neigh_cross_recon"] == 64 and tar.args["nb_neigh_smooth_flow"] == 32
    pth = read_point_feature_checkpoint(full.weights)
    for k, v in pth.state_dict.items():
        assert torch.equal(v, tar.state_dict[k]), k
    pc = np.random.default_rng(0).uniform(-5, 5, (300, 3)).astype(np.float32)
    res = get_scene_flow_method("scoop", checkpoint=str(full.weights), stop=dict(max_iters=2), num_threads=1)(pc, pc + 0.1)
    assert res.flow.shape == pc.shape and np.isfinite(res.flow).all()


def test_training_lowers_the_self_supervised_loss(tmp_path):
    """One pair, batch 1, 30 Adam steps at lr 3e-3 from a random net (means of 10-step windows). Measured:
    loss 26.3 -> 22.5 (the smoothness term, x10, dominates), Chamfer 0.69 -> 0.30, initial-flow EPE 1.58 -> 1.27 m."""
    result = train(dict(TINY, out=str(tmp_path / "fit"), synthetic={"num_samples": 1, "beams": 16, "azimuths": 256},
                        batch_size=1, max_steps=30, lr=3e-3, log_every=10, checkpoint_every=30))
    first, last = result.history[0], result.history[-1]
    assert last["loss"] < 0.9 * first["loss"] and last["recon"] < 0.6 * first["recon"], result.history
    assert last["epe"] < 0.9 * first["epe"], result.history


def test_cli_trains_from_flot_weights(tmp_path, sample_data, capsys):
    from motionflow.cli.main import main
    from motionflow.sceneflow.point_features import read_point_feature_checkpoint

    flot = sample_data / "flot_pretrained" / "model_2048.tar"
    config = tmp_path / "scoop.json"
    config.write_text(json.dumps({k: v for k, v in TINY.items() if k not in ("model", "log_every")}))
    code = main(["train", "--model", "scoop", "--config", str(config), "--out", str(tmp_path / "run"),
                 "--max-steps", "1", "--init-checkpoint", str(flot), "--lr", "1e-12", "--no-progress"])
    assert code == 0
    assert "trained scoop to step 1" in capsys.readouterr().out
    # started from FLOT's feature net (an lr of 1e-12 leaves it where it was)
    flot_sd, got = read_point_feature_checkpoint(flot).state_dict, read_point_feature_checkpoint(tmp_path / "run" / "model.tar")
    for k, v in got.state_dict.items():
        torch.testing.assert_close(v, flot_sd[k], rtol=0, atol=1e-9)
    assert isinstance(got.args, dict) and isinstance(argparse.Namespace(**got.args), argparse.Namespace)
