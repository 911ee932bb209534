"""Evaluation tests: a fixed git commit in run fingerprints, roots of links to the shared samples.

Others commit to this checkout while tests run; a resumed evaluation is (rightly) refused when the code
changed between two runs, which would make every two-run test flaky. The test of that refusal sets its
own commits.
"""

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def fixed_git_sha(monkeypatch):
    import motionflow.eval.report

    monkeypatch.setattr(motionflow.eval.report, "git_sha", lambda start=None: "0" * 40)


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
