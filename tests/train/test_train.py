"""End-to-end training on CPU: overfitting one clip, exact resume, checkpoints that estimate/eval load."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from motionflow.errors import CheckpointError
from motionflow.train import train
from motionflow.train.config import ConfigError

#: The smallest legitimate RAFT: two correlation levels (coarsest level 4 px at a 64 px crop) and two
#: refinement iterations; everything else is the official large RAFT.
TINY = dict(
    model="raft",
    dataset="synthetic",
    batch_size=1,
    iters=2,
    crop=[64, 64],
    augment=False,
    weight_decay=1e-4,
    model_options={"corr_levels": 2, "corr_radius": 3},
    synthetic={"num_samples": 1, "size": [64, 64], "max_motion": 4.0},
    log_every=1,
    progress=False,
)


def _losses(out):
    with open(out / "log.csv", newline="") as fh:
        return [(int(r["step"]), float(r["loss"]), float(r["grad_norm"]), float(r["epe"])) for r in csv.DictReader(fh)]


def test_tiny_raft_overfits_one_synthetic_clip(tmp_path):
    result = train(dict(TINY, out=str(tmp_path / "run"), max_steps=45, lr=1e-3, val_every=45,
                        val_dataset="synthetic", val_options={"num_samples": 1, "size": [64, 64]}, val_iters=2))
    losses = [row["loss"] for row in result.history]
    assert len(losses) == 45
    first, last = losses[0], sum(losses[-3:]) / 3
    assert last <= first / 5, f"loss fell only {first / last:.2f}x: {losses}"
    assert result.history[-1]["epe"] < result.history[0]["epe"] / 3
    # periodic validation through motionflow.eval on the same (training) clip agrees with the fit
    assert len(result.validation) == 1 and result.validation[0]["epe"] < 0.5 * result.history[0]["epe"]
    assert (tmp_path / "run" / "val.csv").is_file()


def test_resume_reproduces_the_uninterrupted_loss_curve(tmp_path):
    cfg = dict(TINY, max_steps=6, lr=4e-4, augment=True, crop=[64, 64], add_noise=True, checkpoint_every=2,
               synthetic={"num_samples": 3, "size": (72, 80)}, batch_size=2)
    full = train(dict(cfg, out=str(tmp_path / "full")))
    part = train(dict(cfg, out=str(tmp_path / "part")), stop_at=3)
    assert part.step == 3
    with pytest.raises(CheckpointError, match="already holds a run"):
        train(dict(cfg, out=str(tmp_path / "part")))
    with pytest.raises(ConfigError, match=r"resume: the config differs.*lr: 0.0004 -> 0.0005"):
        train(dict(cfg, out=str(tmp_path / "part"), lr=5e-4), resume=True)
    from motionflow.train import resume_config

    rest = train(resume_config(tmp_path / "part"), resume=True)  # as `motionflow train --out part --resume`
    assert rest.step == 6 and [r["step"] for r in rest.history] == [4, 5, 6]
    assert _losses(tmp_path / "full") == _losses(tmp_path / "part")
    a = torch.load(tmp_path / "full" / "model.pth")
    b = torch.load(tmp_path / "part" / "model.pth")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(CheckpointError, match="no training state"):
        train(dict(cfg, out=str(tmp_path / "nothing")), resume=True)


def test_interrupted_run_logs_the_rows_of_an_uninterrupted_one(tmp_path):
    """stop_at inside a log window: the resumed run logs the same window means at the same steps."""
    from motionflow.train import resume_config

    cfg = dict(TINY, max_steps=5, log_every=4, lr=4e-4, synthetic={"num_samples": 2, "size": (64, 64)})
    train(dict(cfg, out=str(tmp_path / "full")))
    part = train(dict(cfg, out=str(tmp_path / "part")), stop_at=2)
    assert part.history == []  # no log row at the interruption (steps 1-2 belong to the window of step 4)
    train(resume_config(tmp_path / "part"), resume=True)
    assert [r[0] for r in _losses(tmp_path / "full")] == [4, 5]
    assert _losses(tmp_path / "full") == _losses(tmp_path / "part")


def test_trained_weights_load_in_estimate_and_eval(tmp_path, capsys):
    """`motionflow train` writes official-layout weights that create_model, the registry and eval read."""
    from motionflow.cli.main import main
    from motionflow.eval import evaluate
    from motionflow.models import create_model
    from motionflow.registry import get_optical_flow_method

    out = tmp_path / "run"
    code = main(["train", "--model", "raft", "--dataset", "synthetic", "--out", str(out), "--max-steps", "1",
                 "--crop", "128", "128", "--iters", "1", "--batch-size", "1", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert "trained raft to step 1" in capsys.readouterr().out
    sd = torch.load(out / "model.pth")
    assert all(k.startswith("module.") for k in sd)  # nn.DataParallel layout of raft-*.pth
    assert "module.cnet.layer2.0.norm3.weight" in sd  # the official twice-registered BatchNorm, both names
    state = torch.load(out / "train_state.pt", weights_only=False)
    model = create_model("raft", checkpoint=out / "model.pth")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state["model"].items())
    method = get_optical_flow_method("raft", checkpoint=str(out / "model.pth"), iters=2, device="cpu")
    report = evaluate("synthetic-flow", method, dataset_options={"num_samples": 1}, progress=False)
    # eval scores the trained weights: its EPE is the one computed by hand from the same model's flow
    from motionflow.datasets import get_dataset
    from motionflow.inference import estimate_flow

    sample = get_dataset("synthetic-flow", None, num_samples=1)[0]
    assert all(torch.equal(method.model.state_dict()[k], v) for k, v in state["model"].items())
    flow = estimate_flow(sample.frames, method=method).flow.numpy()
    epe = np.linalg.norm(flow - sample.flow, axis=-3)[sample.valid].mean()
    assert report.value("epe") == pytest.approx(float(epe), rel=1e-5)
    # CLI resume of a finished run: nothing left to do, same weights
    code = main(["train", "--out", str(out), "--resume", "--no-progress"])
    assert code == 0
    assert all(torch.equal(torch.load(out / "model.pth")[k], v) for k, v in sd.items())
