"""Shared fixtures: where the shared samples and parity fixtures are.

Tests that need ``../shared`` skip with a reason when it is absent, except when ``CI=true``, where its
absence is a failure (a green CI must never hide skipped parity or sample tests).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _shared_path(env: str, default: Path) -> Path:
    return Path(os.environ.get(env, default))


SAMPLE_DATA = _shared_path("MOTIONFLOW_SAMPLE_DATA", ROOT.parent / "shared" / "data")
PARITY_DIR = _shared_path("MOTIONFLOW_PARITY_DIR", ROOT.parent / "shared" / "parity")


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{what} not found at {path} (CI=true: required)")
        pytest.skip(f"{what} not found at {path}")
    return path


@pytest.fixture(scope="session")
def sample_data() -> Path:
    """``../shared/data`` (or $MOTIONFLOW_SAMPLE_DATA): the real dataset samples."""
    return _need(SAMPLE_DATA, "shared sample data")


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    """``../shared/parity`` (or $MOTIONFLOW_PARITY_DIR): the network parity fixtures."""
    return _need(PARITY_DIR, "parity fixtures")


@pytest.fixture(autouse=True)
def _deterministic_torch():
    import torch

    torch.manual_seed(0)
    yield
