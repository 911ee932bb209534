"""The public surface: every lazily exported name resolves, and importing stays light."""

import importlib
import os
import subprocess
import sys

import pytest

PACKAGES = ["motionflow", "motionflow.ops", "motionflow.eval", "motionflow.classical", "motionflow.train"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_resolves(package):
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        getattr(module, "no_such_name")


def test_no_export_is_shadowed_by_a_submodule_of_the_same_name():
    # importing a submodule sets it as a package attribute: an exported function must not share its name
    import inspect
    import pkgutil

    for package in PACKAGES[1:]:
        module = importlib.import_module(package)
        for info in pkgutil.iter_modules(module.__path__):
            importlib.import_module(f"{package}.{info.name}")
        for name in module.__all__:
            assert not inspect.ismodule(getattr(module, name)), f"{package}.{name} is a module"


def test_import_does_not_load_optional_heavy_dependencies():
    code = (
        "import sys, motionflow, motionflow.ops, motionflow.eval, motionflow.io, motionflow.datasets, "
        "motionflow.registry, motionflow.cli.main\n"
        "motionflow.cli.main.build_parser()\n"
        "print(sorted(m for m in ('cv2', 'open3d', 'pyarrow', 'ray') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_registry_names_resolve_to_factories():
    from motionflow.registry import OPTICAL_FLOW_METHODS, SCENE_FLOW_METHODS

    for table in (OPTICAL_FLOW_METHODS, SCENE_FLOW_METHODS):
        for name, target in table.items():
            module, attr = target.split(":")
            assert callable(getattr(importlib.import_module(module), attr)), name


def test_unknown_method_lists_the_valid_ones():
    from motionflow.errors import UnknownNameError
    from motionflow.registry import get_optical_flow_method, get_scene_flow_method

    with pytest.raises(UnknownNameError, match="valid choices: .*classical"):
        get_optical_flow_method("flownet9")
    with pytest.raises(UnknownNameError, match="valid choices: .*nsfp"):
        get_scene_flow_method("magic")


def test_git_sha_is_motionflows_own_commit_only(tmp_path):
    """A copy of the package inside a user's git project (its .venv) must not report the user's commit
    (every commit of theirs would then refuse an eval resume); a motionflow checkout reports its own."""
    import shutil

    from motionflow.eval.report import git_sha

    if shutil.which("git") is None:
        pytest.fail("git is needed for this test")

    def repo(top, files):
        for rel, text in files.items():
            (top / rel).parent.mkdir(parents=True, exist_ok=True)
            (top / rel).write_text(text)
        env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
               "PATH": os.environ.get("PATH", "")}
        for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "x"]):
            subprocess.run(["git", *cmd], cwd=top, check=True, env=env, capture_output=True)
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=top, capture_output=True, text=True).stdout.strip()

    user = tmp_path / "user"
    repo(user, {"pyproject.toml": 'name = "their-app"\n', ".venv/lib/motionflow/__init__.py": ""})
    assert git_sha(user / ".venv" / "lib" / "motionflow") is None
    own = tmp_path / "mf"
    sha = repo(own, {"pyproject.toml": '[project]\nname = "motionflow"\n', "motionflow/__init__.py": ""})
    assert len(sha) == 40 and git_sha(own / "motionflow") == sha
