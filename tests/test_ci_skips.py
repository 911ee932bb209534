"""The conftest rule: under ``CI=true`` a skip fails the run unless its reason is on the allow-list (CUDA)."""

import importlib.util
from pathlib import Path

import pytest
from _pytest.reports import CollectReport, TestReport


@pytest.fixture(scope="module")
def conftest():
    path = Path(__file__).parent / "conftest.py"
    spec = importlib.util.spec_from_file_location("motionflow_tests_conftest_copy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _skipped(reason: str) -> TestReport:
    return TestReport("t.py::test_x", ("t.py", 3, "test_x"), {}, "skipped", ("t.py", 4, f"Skipped: {reason}"), "setup")


@pytest.mark.parametrize("ci, reason, outcome", [
    ("true", "needs CUDA", "skipped"),
    ("true", "ray is not installed", "failed"),
    ("true", "headless Chromium is not installed", "failed"),
    (None, "ray is not installed", "skipped"),
    ("false", "no foo", "skipped"),
])
def test_skips_fail_under_ci_unless_allowed(conftest, monkeypatch, ci, reason, outcome):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    report = _skipped(reason)
    conftest._refuse_skip_in_ci(report)
    assert report.outcome == outcome
    if outcome == "failed":
        assert "CI=true" in str(report.longrepr) and reason in str(report.longrepr)


def test_module_level_skips_and_xfails(conftest, monkeypatch):
    monkeypatch.setenv("CI", "true")
    collected = CollectReport("t.py", "skipped", ("t.py", 2, "Skipped: could not import 'ray'"), [])
    conftest._refuse_skip_in_ci(collected)
    assert collected.outcome == "failed" and "could not import 'ray'" in str(collected.longrepr)
    xfail = _skipped("known bug")
    xfail.wasxfail = "known bug"
    conftest._refuse_skip_in_ci(xfail)
    assert xfail.outcome == "skipped"  # an expected failure is not a skip
    passed = TestReport("t.py::test_y", ("t.py", 5, "test_y"), {}, "passed", None, "call")
    conftest._refuse_skip_in_ci(passed)
    assert passed.outcome == "passed"
