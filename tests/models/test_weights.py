"""Strict checkpoint loading: layouts that must load, and every kind of mismatch that must not."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from motionflow.errors import CheckpointError
from motionflow.models import create_model, load_checkpoint, unwrap_state_dict
from motionflow.models.raft import RAFT_ALIASES


class Tiny(nn.Module):
    """conv + batch norm: parameters, float buffers and an integer buffer."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.bn = nn.BatchNorm2d(3)


def _random_sd(model: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    g = torch.Generator().manual_seed(1)
    sd = OrderedDict()
    for k, v in model.state_dict().items():
        sd[k] = torch.randn(v.shape, generator=g) if v.is_floating_point() else torch.full(v.shape, 7)
    return sd


def _assert_loaded(model, sd):
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_round_trip_dataparallel_file(tmp_path):
    src = _random_sd(Tiny())
    path = tmp_path / "dp.pth"
    torch.save(nn.DataParallel(_Holder(src)).state_dict(), path)  # real DataParallel layout: module.<key>
    model = Tiny()
    report = load_checkpoint(model, path)
    _assert_loaded(model, src)
    assert report.prefixes == ["module."] and report.wrappers == [] and report.loaded == len(src)


class _Holder(Tiny):
    def __init__(self, sd):
        super().__init__()
        self.load_state_dict(sd)


@pytest.mark.parametrize("wrapper", ["model", "state_dict"])
def test_wrapped_training_checkpoint(tmp_path, wrapper):
    src = _random_sd(Tiny())
    path = tmp_path / "train.pth"
    torch.save({wrapper: {"module." + k: v for k, v in src.items()}, "optimizer": {"state": {}}, "total_steps": 5}, path)
    model = Tiny()
    report = load_checkpoint(model, path)
    _assert_loaded(model, src)
    assert report.wrappers == [wrapper] and report.prefixes == ["module."]


def test_missing_extra_and_wrong_shape_are_all_named():
    sd = _random_sd(Tiny())
    del sd["bn.running_mean"]  # missing
    sd["head.weight"] = torch.zeros(2)  # extra
    sd["conv.bias"] = torch.zeros(4)  # wrong shape (model: 3)
    model = Tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(model, sd)
    msg = str(exc.value)
    assert "missing keys (1): ['bn.running_mean']" in msg
    assert "unexpected keys (1): ['head.weight']" in msg
    assert "conv.bias: checkpoint (4,) vs model conv.bias (3,)" in msg
    # nothing was loaded
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_float_into_integer_buffer_is_refused():
    sd = _random_sd(Tiny())
    sd["bn.num_batches_tracked"] = torch.tensor(1.5)
    with pytest.raises(CheckpointError, match="bn.num_batches_tracked: checkpoint torch.float32 vs model"):
        load_checkpoint(Tiny(), sd)


def test_unused_keys_accepted_by_name_only():
    sd = _random_sd(Tiny())
    sd["norm.weight"] = torch.ones(3)
    sd["rel_ind"] = torch.zeros(4, 4, dtype=torch.int64)
    model = Tiny()
    report = load_checkpoint(model, sd, unused_keys=["norm.weight", "rel_ind", "absent.key"])
    assert sorted(report.unused) == ["norm.weight", "rel_ind"]
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): \['rel_ind'\]"):
        load_checkpoint(Tiny(), sd, unused_keys=["norm.weight"])


def test_explicit_key_map_and_its_checks():
    src = _random_sd(Tiny())
    renamed = {k.replace("conv.", "encoder.proj."): v for k, v in src.items()}
    key_map = {k.replace("conv.", "encoder.proj."): k for k in src}
    model = Tiny()
    load_checkpoint(model, renamed, key_map=key_map)
    _assert_loaded(model, src)
    with pytest.raises(CheckpointError, match="unexpected keys"):
        load_checkpoint(Tiny(), renamed)  # identity map does not know encoder.proj.*
    bad = dict(key_map, **{"encoder.proj.weight": "nope.weight"})
    with pytest.raises(CheckpointError, match=r"key_map targets that are not keys of the model: \['nope.weight'\]"):
        load_checkpoint(Tiny(), renamed, key_map=bad)
    dup = dict(key_map, **{"encoder.proj.bias": "conv.weight"})
    with pytest.raises(CheckpointError, match="several checkpoint keys to one model key"):
        load_checkpoint(Tiny(), renamed, key_map=dup)


def test_alias_takes_canonical_value_and_checks_shape():
    src = _random_sd(Tiny())
    sd = OrderedDict(src)
    sd["norm3.weight"] = torch.full((3,), 9.0)  # alias of bn.weight with a different value
    model = Tiny()
    report = load_checkpoint(model, sd, aliases={"norm3.weight": "bn.weight"})
    assert torch.equal(model.bn.weight.detach(), src["bn.weight"])
    assert report.aliases == {"norm3.weight": "bn.weight"} and report.aliases_differing == ["norm3.weight"]
    sd["norm3.weight"] = torch.ones(5)
    with pytest.raises(CheckpointError, match=r"norm3.weight \(alias of bn.weight\): \(5,\) vs \(3,\)"):
        load_checkpoint(Tiny(), sd, aliases={"norm3.weight": "bn.weight"})
    del sd["norm3.weight"]  # the alias only duplicates: a file without it still loads, and says so
    model = Tiny()
    report = load_checkpoint(model, sd, aliases={"norm3.weight": "bn.weight"})
    assert report.aliases_absent == ["norm3.weight"] and report.aliases == {}
    assert torch.equal(model.bn.weight.detach(), src["bn.weight"])
    del sd["bn.weight"]  # but the canonical key itself is required
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): \['bn.weight'\]"):
        load_checkpoint(Tiny(), sd, aliases={"norm3.weight": "bn.weight"})


def test_mixed_prefix_and_non_state_dict():
    sd = {"module.conv.weight": torch.zeros(3, 2, 3, 3), "conv.bias": torch.zeros(3)}
    with pytest.raises(CheckpointError, match="1 of 2 keys start with 'module.'"):
        unwrap_state_dict(sd)
    with pytest.raises(CheckpointError, match="expected a state dict"):
        unwrap_state_dict({"epoch": 3, "lr": 0.1})


def test_unreadable_and_absent_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(Tiny(), tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match=r"junk\.pth' is not a (readable )?torch file \(") as err:
        load_checkpoint(Tiny(), junk)
    assert "\n" not in str(err.value)  # one line, not torch's multi-line advice


class _Opaque:  # an arbitrary pickled object, like an argparse Namespace in a training checkpoint
    def __init__(self):
        self.lr = 0.1


def test_pickled_objects_need_allow_pickle(tmp_path):
    src = _random_sd(Tiny())
    path = tmp_path / "pickled.pth"
    torch.save({"model": src, "args": _Opaque()}, path)
    with pytest.raises(CheckpointError, match="allow_pickle=True"):
        load_checkpoint(Tiny(), path)
    model = Tiny()
    load_checkpoint(model, path, allow_pickle=True)
    _assert_loaded(model, src)


def test_raft_loads_the_official_layout_and_its_own_state_dict():
    """The official file carries the twice-registered norm3 entries; our plain state_dict() lacks them."""
    model = create_model("raft")
    sd = {"module." + k: v for k, v in model.state_dict().items()}
    create_model("raft", checkpoint=_with_aliases(sd))  # complete official layout loads
    again = create_model("raft", checkpoint=sd)  # so does our own state_dict (no alias entries)
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key


def _with_aliases(sd):
    out = dict(sd)
    for alias, canonical in RAFT_ALIASES.items():
        out["module." + alias] = sd["module." + canonical].clone()
    return out
