"""Shared fixtures: where the shared samples and parity fixtures are.

Tests that need ``../shared`` skip with a reason when it is absent, except when ``CI=true``, where its
absence is a failure (a green CI must never hide skipped parity or sample tests). Under ``CI=true`` any
other skip fails the run too unless its reason names one of :data:`CI_ALLOWED_SKIPS` (CI has no GPU):
optional packages are installed there through the ``test`` extra, so a skip means something is missing.
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


@pytest.fixture
def sintel_root(sample_data, tmp_path) -> Path:
    """A Sintel root of symlinks to ../shared/data/sintel_alley_1 (nothing is copied)."""
    src = sample_data / "sintel_alley_1"
    root = tmp_path / "sintel"
    for sub in ("clean", "final", "flow", "occlusions", "invalid"):
        (root / "training" / sub).mkdir(parents=True)
        (root / "training" / sub / "alley_1").symlink_to(src / sub, target_is_directory=True)
    return root


@pytest.fixture
def kitti_root(sample_data, tmp_path) -> Path:
    """A KITTI 2015 root of symlinks to ../shared/data/kitti2015_flow_000000 (frames _10 / _11 only)."""
    src = sample_data / "kitti2015_flow_000000"
    root = tmp_path / "kitti"
    (root / "training" / "image_2").mkdir(parents=True)
    (root / "training" / "flow_occ").mkdir(parents=True)
    for name in ("000000_10.png", "000000_11.png"):
        (root / "training" / "image_2" / name).symlink_to(src / name)
    (root / "training" / "flow_occ" / "000000_10.png").symlink_to(src / "flow_gt.png")
    return root


@pytest.fixture(autouse=True)
def _deterministic_torch():
    import torch

    torch.manual_seed(0)
    yield


#: Under ``CI=true`` a skip fails the run unless its reason contains one of these words.
CI_ALLOWED_SKIPS = ("CUDA",)


def _refuse_skip_in_ci(report) -> None:
    """Turn a skipped report into a failure under ``CI=true`` unless its reason is allowed."""
    if not report.skipped or hasattr(report, "wasxfail") or os.environ.get("CI") != "true":
        return
    longrepr = report.longrepr
    reason = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    if not any(word in reason for word in CI_ALLOWED_SKIPS):
        report.outcome = "failed"
        report.longrepr = (
            f"CI=true: a skip fails the run unless its reason names {', '.join(CI_ALLOWED_SKIPS)} "
            f"(install what the test needs in .ci/run or the test extra); skipped because: {reason}"
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _refuse_skip_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield  # module-level skips (pytest.importorskip at import time)
    _refuse_skip_in_ci(outcome.get_result())
