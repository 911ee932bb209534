"""Nothing motionflow reads runs code (issue 22).

* an AST walk of the package: every ``torch.load`` passes ``weights_only=True``, every ``np.load`` passes
  ``allow_pickle=False``, and nothing calls ``pickle.load(s)`` / ``Unpickler`` -- except inside an
  ``if allow_pickle:`` branch, i.e. behind an explicit opt-in the user passes;
* crafted files whose unpickling would create a marker file: ``train --resume``, ``create_model`` and
  ``motionflow estimate --checkpoint`` refuse them, and the marker never appears.
"""

from __future__ import annotations

import ast
import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import motionflow
from motionflow.errors import CheckpointError

PACKAGE = Path(motionflow.__file__).resolve().parent

UNPICKLERS = {("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"), ("dill", "load"),
              ("dill", "loads"), ("joblib", "load"), ("cloudpickle", "load"), ("cloudpickle", "loads")}


def _dotted(node) -> tuple:
    """``a.b.c`` -> ("a", "b", "c"); anything else -> ()."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return tuple(reversed(parts))
    return ()


def _keyword_is(call: ast.Call, name: str, value) -> bool:
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is value for k in call.keywords)


def _mentions_allow_pickle(test: ast.AST) -> bool:
    return any(
        (isinstance(n, ast.Name) and n.id == "allow_pickle") or (isinstance(n, ast.Attribute) and n.attr == "allow_pickle")
        for n in ast.walk(test)
    )


def unsafe_loads(source: str, filename: str = "<src>") -> list:
    """``file:line: what`` for each unsafe deserialising call in ``source`` (see the module docstring)."""
    tree = ast.parse(source, filename)
    found = []

    def visit(node, guarded: bool):
        if isinstance(node, ast.If) and _mentions_allow_pickle(node.test):
            # only the branch taken when the user opted in is exempt
            positive = not (isinstance(node.test, ast.UnaryOp) and isinstance(node.test.op, ast.Not))
            visit(node.test, guarded)
            for child in node.body:
                visit(child, guarded or positive)
            for child in node.orelse:
                visit(child, guarded or not positive)
            return
        if isinstance(node, ast.Call) and not guarded:
            name = _dotted(node.func)
            where = f"{filename}:{node.lineno}"
            if name[-2:] == ("torch", "load") or name == ("torch", "serialization", "load"):
                if not _keyword_is(node, "weights_only", True):
                    found.append(f"{where}: torch.load without weights_only=True")
            elif name[-1:] == ("load",) and name[:-1] in (("np",), ("numpy",)):
                if not _keyword_is(node, "allow_pickle", False):
                    found.append(f"{where}: np.load without allow_pickle=False")
            elif name[-2:] in UNPICKLERS:
                found.append(f"{where}: {'.'.join(name)}")
        for child in ast.iter_child_nodes(node):
            visit(child, guarded)

    visit(tree, False)
    return found


def test_the_checker_flags_what_it_should():
    bad = (
        "import torch, pickle, numpy as np\n"
        "torch.load(p)\n"
        "torch.load(p, weights_only=False)\n"
        "np.load(p)\n"
        "pickle.loads(b)\n"
        "if not allow_pickle:\n    torch.load(p)\n"
        "if allow_pickle:\n    pass\nelse:\n    pickle.load(f)\n"
    )
    assert [line.split(": ", 1)[0] for line in unsafe_loads(bad)] == [f"<src>:{n}" for n in (2, 3, 4, 5, 7, 11)]
    good = (
        "torch.load(p, map_location='cpu', weights_only=True)\n"
        "np.load(p, allow_pickle=False)\n"
        "if allow_pickle:\n    torch.load(p, weights_only=False)\n"
        "if self.allow_pickle and trusted:\n    pickle.load(f)\n"
    )
    assert unsafe_loads(good) == []


def test_package_loads_nothing_unsafely():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += unsafe_loads(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE.parent)))
    assert found == [], "unsafe deserialisation:\n" + "\n".join(found)


class _CreatesFile:
    """Unpickling this calls ``open(marker, "w")``: a stand-in for arbitrary code in a shared file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_state_round_trips_and_is_weights_only(tmp_path):
    from motionflow.train.checkpoint import STATE_NAME, load_training_state, rng_state, set_rng_state

    random.seed(3)
    np.random.seed(4)
    torch.manual_seed(5)
    state = rng_state()
    buf = io.BytesIO()
    torch.save({"version": 2, "rng": state, "config": json.dumps({"a": 1})}, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)  # plain weights_only load: no allow-list needed
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    set_rng_state(loaded["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    # a real save goes through the same path
    (tmp_path / STATE_NAME).write_bytes(buf.getvalue())
    assert load_training_state(tmp_path)["config"] == {"a": 1}


def test_resume_refuses_a_crafted_state_without_running_it(tmp_path):
    from motionflow.train.checkpoint import STATE_NAME, load_training_state

    marker = tmp_path / "pwned"
    torch.save({"version": 2, "config": "{}", "rng": _CreatesFile(marker)}, tmp_path / STATE_NAME)
    with pytest.raises(CheckpointError, match=r"train_state\.pt' holds Python objects besides tensors.*does not run code"):
        load_training_state(tmp_path)
    assert not marker.exists()


def test_resume_refuses_an_old_pickled_state(tmp_path):
    from motionflow.train.checkpoint import STATE_NAME, load_training_state

    # version 1 stored NumPy's RNG state (an ndarray) and the config dict: not weights_only-safe
    torch.save({"version": 1, "rng": {"numpy": np.random.get_state()}, "config": {}}, tmp_path / STATE_NAME)
    with pytest.raises(CheckpointError, match=r"holds Python objects besides tensors.*\(Unsupported global: GLOBAL numpy"):
        load_training_state(tmp_path)
    torch.save({"version": 1, "config": "{}"}, tmp_path / STATE_NAME)
    with pytest.raises(CheckpointError, match=r"not a motionflow training state of version 2 \(found version 1\)"):
        load_training_state(tmp_path)


def test_train_resume_cli_refuses_crafted_state(tmp_path, capsys):
    from motionflow.cli.main import main

    from motionflow.train import load_config
    from motionflow.train.checkpoint import write_config

    out = tmp_path / "run"
    out.mkdir()
    cfg = load_config(None, model="raft", dataset="synthetic", out=str(out), max_steps=2)
    write_config(out, cfg.to_dict())  # a run folder someone sent: a plausible config beside the crafted state
    marker = tmp_path / "pwned"
    torch.save({"version": 2, "config": json.dumps(cfg.to_dict()), "rng": _CreatesFile(marker)}, out / "train_state.pt")
    rc = main(["train", "--out", str(out), "--resume"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert len(err) == 1 and "train_state.pt" in err[0] and "Python objects" in err[0], err
    assert not marker.exists()


def test_create_model_refuses_crafted_checkpoint(tmp_path):
    from motionflow.models import create_model

    marker = tmp_path / "pwned"
    path = tmp_path / "raft-things.pth"
    torch.save({"module.fnet.conv1.weight": torch.zeros(1), "hook": _CreatesFile(marker)}, path)
    with pytest.raises(CheckpointError, match=r"raft-things\.pth' holds Python objects besides tensors"):
        create_model("raft", checkpoint=path)
    assert not marker.exists()


def test_estimate_cli_refuses_crafted_checkpoint(tmp_path, capsys):
    from motionflow.cli.main import main
    from motionflow.io import write_image

    rng = np.random.default_rng(0)
    frames = []
    for i in range(2):
        f = tmp_path / f"f{i}.png"
        write_image(f, rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
        frames.append(str(f))
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.pth"
    torch.save({"model": _CreatesFile(marker)}, ckpt)
    out = tmp_path / "flows"
    rc = main(["estimate", *frames, "--out", str(out), "--method", "raft", "--checkpoint", str(ckpt)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert len(err) == 1 and "evil.pth" in err[0] and "Python objects" in err[0], err
    assert not marker.exists()
    assert not out.exists() or not any(out.rglob("*.flo"))
