"""One real optimizer step of VideoFlow BOF / MOF and StreamFlow (the official architectures, random init)."""

from __future__ import annotations

import math

import pytest
import torch

from motionflow.models import create_model
from motionflow.train import train


@pytest.mark.slow
@pytest.mark.parametrize("name, frames", [("videoflow-bof", 3), ("videoflow-mof", 3), ("streamflow", 4)])
def test_one_training_step_updates_the_network_and_saves_loadable_weights(tmp_path, name, frames):
    out = tmp_path / name
    result = train(dict(model=name, dataset="synthetic", out=str(out), max_steps=1, batch_size=1, lr=1e-4,
                        weight_decay=0.0, iters=1, frames=frames, crop=[128, 128], augment=False,
                        synthetic={"num_samples": 1, "size": [128, 128]}, log_every=1, progress=False))
    row = result.history[0]
    assert math.isfinite(row["loss"]) and row["loss"] > 0 and row["grad_norm"] > 0
    state = torch.load(out / "train_state.pt", weights_only=False)["model"]
    loaded = create_model(name, checkpoint=out / "model.pth")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())
    # without weight decay only parameters with a gradient move: nearly all of them must have moved
    torch.manual_seed(1234)  # the run's seed: the same random initialisation
    init = create_model(name).state_dict()
    params = {k for k, _ in loaded.named_parameters()}
    moved = [k for k in params if not torch.equal(init[k], state[k])]
    assert len(moved) > 0.8 * len(params), sorted(params - set(moved))[:10]
    # AdamW's first step moves every element by at most lr (|m_hat / sqrt(v_hat)| <= 1): same init, one step
    assert max(float((init[k] - state[k]).abs().max()) for k in params) <= 1e-4 * 1.001
