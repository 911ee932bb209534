"""Evaluation tests: a fixed git commit in run fingerprints (the Sintel / KITTI roots of links to the shared
samples, ``sintel_root`` and ``kitti_root``, are in tests/conftest.py: the CLI tests use them too).

Others commit to this checkout while tests run; a resumed evaluation is (rightly) refused when the code
changed between two runs, which would make every two-run test flaky. The test of that refusal sets its
own commits.
"""

import pytest


@pytest.fixture(autouse=True)
def fixed_git_sha(monkeypatch):
    import motionflow.eval.report

    monkeypatch.setattr(motionflow.eval.report, "git_sha", lambda start=None: "0" * 40)
