"""Training config: schedules, files, and clear errors for bad configs (API and CLI)."""

from __future__ import annotations

import json

import pytest

from motionflow.cli.main import main
from motionflow.errors import MotionflowError, UnknownNameError
from motionflow.train.config import SCHEDULES, ConfigError, TrainConfig, config_from_dict, load_config


def test_defaults_are_raft_train_py():
    cfg = config_from_dict({})
    assert (cfg.lr, cfg.weight_decay, cfg.epsilon, cfg.clip, cfg.gamma, cfg.iters) == (2e-5, 5e-5, 1e-8, 1.0, 0.8, 12)
    assert (cfg.pct_start, cfg.scheduler_extra_steps, cfg.max_flow) == (0.05, 100, 400.0)


def test_schedule_fills_unset_keys_and_explicit_values_win():
    cfg = config_from_dict({"schedule": "raft-sintel", "lr": 1e-4})
    assert cfg.model == "raft" and cfg.dataset == "stage-sintel"
    assert (cfg.max_steps, cfg.batch_size, cfg.crop, cfg.weight_decay, cfg.gamma) == (100_000, 6, [368, 768], 1e-5, 0.85)
    assert cfg.lr == 1e-4
    mof = config_from_dict({"schedule": "videoflow-mof-things", "dataset": "synthetic"})
    assert (mof.model, mof.iters, mof.lr, mof.max_steps, mof.crop) == ("videoflow-mof", 6, 2.5e-4, 125_000, [432, 960])
    with pytest.raises(UnknownNameError, match="nothing left to train on in 'stage-things'.*FlyingThings3D"):
        config_from_dict({"schedule": "videoflow-mof-things"})  # no FlyingThings3D loader: a clear error
    assert SCHEDULES["streamflow-sintel"]["model"] == "streamflow"


def test_unknown_key_names_it_and_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown keys \['learning_rate'\]; valid keys: model, dataset"):
        config_from_dict({"learning_rate": 1e-4})


@pytest.mark.parametrize(
    "values, message",
    [
        ({"lr": "fast"}, r"'lr': expected a number, found 'fast'"),
        ({"lr": -1.0}, r"'lr': expected a learning rate > 0, found -1.0"),
        ({"max_steps": 2.5}, r"'max_steps': expected an integer, found 2.5"),
        ({"augment": "yes"}, r"'augment': expected true or false, found 'yes'"),
        ({"crop": [100, 128]}, r"'crop': expected \[height, width\]: two positive integers, multiples of 8, found \[100, 128\]"),
        ({"crop": [64, 128]}, r"'crop': expected both sides >= 128 px \(4 correlation levels"),
        ({"model": "flownet"}, r"'model': expected one of raft, streamflow, videoflow-bof, videoflow-mof, found 'flownet'"),
        ({"gamma": 1.5}, r"'gamma': expected an iteration weight in \(0, 1\]"),
        ({"schedule": "raft-spring"}, r"'schedule': expected one of raft-chairs"),
        ({"val_every": 10}, r"'val_dataset': expected a dataset name when val_every > 0, found None"),
        ({"model_options": [1]}, r"'model_options': expected a mapping"),
    ],
)
def test_bad_values_fail_with_the_key_the_expectation_and_the_value(values, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(values)


def test_fewer_correlation_levels_allow_smaller_crops():
    cfg = config_from_dict({"crop": [64, 64], "model_options": {"corr_levels": 2}})
    assert cfg.crop == [64, 64]


def test_config_file_round_trip_and_overrides(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"model": "raft", "dataset": "synthetic:2", "lr": 3e-4, "crop": [128, 256]}))
    cfg = load_config(path, lr=None, max_steps=7)
    assert isinstance(cfg, TrainConfig)
    assert (cfg.dataset, cfg.lr, cfg.crop, cfg.max_steps) == ("synthetic:2", 3e-4, [128, 256], 7)
    assert config_from_dict(cfg.to_dict()) == cfg


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{lr: 1}")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(bad)
    lst = tmp_path / "list.json"
    lst.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="expected a mapping of keys to values, found list"):
        load_config(lst)
    assert issubclass(ConfigError, MotionflowError) and issubclass(ConfigError, ValueError)


def test_yaml_config_when_pyyaml_is_installed(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "run.yaml"
    path.write_text("model: raft\nlr: 0.0003\ncrop: [128, 128]\n")
    assert load_config(path).lr == 3e-4


def test_cli_bad_config_exits_2_with_the_message(tmp_path, capsys):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"iters": 0}))
    code = main(["train", "--config", str(path), "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "config key 'iters': expected an integer >= 1, found 0" in err
    code = main(["train", "--dataset", "sintel:0.5", "--out", str(tmp_path / "run2"), "--crop", "128", "128", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "weight of 'sintel' must be a positive integer" in err
    code = main(["train", "--dataset", "things", "--root", str(tmp_path), "--out", str(tmp_path / "run3"), "--crop", "128", "128"])
    assert code == 2 and "FlyingThings3D" in capsys.readouterr().err


def test_example_configs_are_valid():
    from pathlib import Path

    files = sorted((Path(__file__).resolve().parents[2] / "examples").glob("train_*.json"))
    assert files
    for path in files:
        cfg = load_config(path, out="runs/x")
        assert cfg.model in ("raft", "videoflow-bof", "videoflow-mof", "streamflow"), path
