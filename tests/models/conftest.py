"""Shared helpers for the network tests: the parity recipe of ``../shared/parity/SPEC.md``.

Every parity test (RAFT, VideoFlow BOF / MOF, StreamFlow) uses the ``parity_fixture`` fixture::

    def test_raft_parity(parity_fixture, tmp_path):
        fx = parity_fixture("raft")              # reads raft.npz + raft_keys.json from parity_dir
        ckpt = fx.checkpoint_file(tmp_path)      # recipe weights, checksums verified, official layout
        model = create_model("raft", checkpoint=ckpt)
        iters = fx["expected_flow_predictions"].shape[0]
        ...
        fx.assert_close("expected_flow_up", out, atol=2e-4)

What it guarantees (SPEC section "Fixture schema and rules for tests"):

* the salt is read from the fixture (``recipe_salt``), never assumed;
* **every** checksum (keys in order, float64 sum and sum of squares, exact equality) is verified
  before any weight is handed out, so no output can be compared against wrongly generated weights;
* the checkpoint file is written in the official layout: ``checkpoint_key`` of ``*_keys.json``
  (``module.`` prefix) and, where the JSON names a ``checkpoint_wrapper`` (StreamFlow: ``"model"``),
  wrapped as ``{wrapper: state_dict}``; tests then load it through
  :func:`motionflow.models.load_checkpoint` exactly like a downloaded file.

Pytest runs with ``--import-mode=importlib``, so test modules cannot ``import conftest``: the helpers are
exposed through fixtures only.
"""

from __future__ import annotations

import contextlib
import json
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch


def recipe(key: str, shape, dtype: str, salt: int) -> np.ndarray:
    """The deterministic weight of one state-dict entry (SPEC section 1), bit-exact.

    Args:
        key: state-dict key WITHOUT ``module.``.
        shape: tuple of ints.
        dtype: dtype string from ``*_keys.json`` (``"float32"``, ``"int64"``).
        salt: the fixture's ``recipe_salt`` as a Python int (unsigned 32 bit).
    """
    shape = tuple(int(s) for s in shape)
    if not dtype.startswith("float"):
        return np.zeros(shape, dtype=np.int64)
    rng = np.random.default_rng(zlib.crc32(key.encode("utf-8")) ^ int(salt))
    if len(shape) >= 2:
        a = 0.75 * rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))
    elif len(shape) == 1 and key.endswith("running_var"):
        a = 1 + 0.1 * np.abs(rng.standard_normal(shape))
    elif len(shape) == 1 and key.endswith("running_mean"):
        a = 0.1 * rng.standard_normal(shape)
    elif len(shape) == 1 and key.endswith("weight"):
        a = 1 + 0.1 * rng.standard_normal(shape)
    else:
        a = 0.1 * rng.standard_normal(shape)
    return np.asarray(a, dtype=np.float32)


class ParityFixture:
    """One model's fixture: ``<model>.npz`` arrays + ``<model>_keys.json`` metadata.

    Attributes:
        model: fixture name (``raft``, ``videoflow_bof``, ``videoflow_mof``, ``streamflow``).
        npz_path, keys_path: the two files.
        meta: the parsed JSON (``entries`` in state-dict order, ``checkpoint_key_prefix``,
            ``checkpoint_wrapper``...).
        salt: ``recipe_salt`` of the npz as a Python int.
    """

    def __init__(self, parity_dir: Path, model: str):
        self.model = model
        self.npz_path = Path(parity_dir) / f"{model}.npz"
        self.keys_path = Path(parity_dir) / f"{model}_keys.json"
        for p in (self.npz_path, self.keys_path):
            if not p.exists():
                pytest.fail(f"parity fixture file missing: {p}")
        with np.load(self.npz_path, allow_pickle=False) as z:
            self._arrays = {k: z[k] for k in z.files}
        self.meta = json.loads(self.keys_path.read_text())
        self.salt = int(np.asarray(self._arrays["recipe_salt"]).reshape(-1)[0])
        self._state_dict = None

    # -- arrays -----------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._arrays:
            pytest.fail(f"{self.npz_path.name}: array {name!r} missing; has {sorted(self._arrays)}")
        return self._arrays[name]

    def __contains__(self, name: str) -> bool:
        return name in self._arrays

    def tensor(self, name: str) -> torch.Tensor:
        """An ``input_*`` array as a float32 torch tensor (a copy)."""
        return torch.from_numpy(np.array(self[name], dtype=np.float32, copy=True))

    @property
    def entries(self) -> list:
        return self.meta["entries"]

    # -- weights ----------------------------------------------------------------------------------
    def verify_checksums(self) -> None:
        """Fail unless keys, order and every sum / sum of squares of the recipe match the npz exactly."""
        want_keys = [str(k) for k in self["checksum_keys"]]
        have_keys = [e["key"] for e in self.entries]
        if want_keys != have_keys:
            diff = [(i, a, b) for i, (a, b) in enumerate(zip(want_keys, have_keys)) if a != b][:5]
            pytest.fail(
                f"{self.model}: checksum_keys ({len(want_keys)}) differ from {self.keys_path.name} "
                f"entries ({len(have_keys)}); first differences {diff}"
            )
        bad = []
        for e, s, q in zip(self.entries, self["checksum_sum"], self["checksum_sumsq"]):
            a64 = recipe(e["key"], e["shape"], e["dtype"], self.salt).astype(np.float64)
            if not (a64.sum() == s and (a64**2).sum() == q):
                bad.append(e["key"])
        if bad:
            pytest.fail(
                f"{self.model}: recipe checksums differ for {len(bad)} entries (salt {self.salt}): {bad[:8]}"
            )

    def state_dict(self) -> "OrderedDict[str, torch.Tensor]":
        """Recipe weights ``{key (no module.): tensor}`` in state-dict order, checksums verified first."""
        if self._state_dict is None:
            self.verify_checksums()
            sd = OrderedDict()
            for e in self.entries:
                sd[e["key"]] = torch.from_numpy(recipe(e["key"], e["shape"], e["dtype"], self.salt))
            self._state_dict = sd
        return OrderedDict(self._state_dict)

    def official_checkpoint(self) -> dict:
        """The recipe weights in the layout of the released files (``module.`` keys, optional wrapper)."""
        sd = self.state_dict()
        flat = OrderedDict((e["checkpoint_key"], sd[e["key"]]) for e in self.entries)
        wrapper = self.meta.get("checkpoint_wrapper")
        return {wrapper: flat} if wrapper else flat

    def checkpoint_file(self, directory: Path) -> Path:
        """Save :meth:`official_checkpoint` with ``torch.save`` under ``directory`` and return the path."""
        path = Path(directory) / f"{self.model}-parity.pth"
        torch.save(self.official_checkpoint(), path)
        return path

    # -- comparison -------------------------------------------------------------------------------
    def assert_close(self, name: str, got, atol: float, mean_atol: float | None = None) -> None:
        """Compare ``got`` with ``expected`` array ``name``: shape equal, ``max|d| <= atol``."""
        want = self[name]
        if isinstance(got, torch.Tensor):
            got = got.detach().cpu().float().numpy()
        got = np.asarray(got)
        assert got.shape == want.shape, f"{name}: shape {got.shape}, expected {want.shape}"
        assert np.isfinite(got).all(), f"{name}: non-finite values"
        d = np.abs(got.astype(np.float64) - want.astype(np.float64))
        assert d.max() <= atol, f"{name}: max|diff| {d.max():.3g} > {atol:g} (mean {d.mean():.3g})"
        if mean_atol is not None:
            assert d.mean() <= mean_atol, f"{name}: mean|diff| {d.mean():.3g} > {mean_atol:g}"


@pytest.fixture(scope="session")
def parity_fixture(parity_dir):
    """``parity_fixture(model) -> ParityFixture`` for ``raft``, ``videoflow_bof``, ``videoflow_mof``,
    ``streamflow`` (cached per session; skips / fails like ``parity_dir``)."""
    cache: dict = {}

    def load(model: str) -> ParityFixture:
        if model not in cache:
            cache[model] = ParityFixture(parity_dir, model)
        return cache[model]

    return load


@pytest.fixture(scope="session")
def parity_recipe():
    """The bare ``recipe(key, shape, dtype, salt)`` function of SPEC section 1."""
    return recipe


@contextlib.contextmanager
def _memory_bounded(model, chunk_bytes: int = 2**20):
    """Every memory-bounded path of ``model`` forced on (issue 21), defaults restored afterwards.

    On-demand correlation, fused Twins sub-sampled attention and GMA attention as factors (budget 0),
    LSA windows and Twins MLPs in chunks of ``chunk_bytes`` (several chunks at the fixture sizes; budget 0
    would run one token per chunk, tens of seconds).
    """
    from motionflow.models.blocks.memory import DEFAULT_MAX_BYTES, set_max_bytes
    from motionflow.models.blocks.twins import LocallyGroupedAttn, TwinsBlock

    set_max_bytes(model, 0)
    for m in model.modules():
        if isinstance(m, (LocallyGroupedAttn, TwinsBlock)):
            m.max_bytes = chunk_bytes
    model.corr_on_demand = True
    fused = torch.nn.functional.scaled_dot_product_attention
    calls = []

    def counted(*args, **kw):
        calls.append(args[0].shape)
        return fused(*args, **kw)

    torch.nn.functional.scaled_dot_product_attention = counted
    try:
        yield model
    finally:
        torch.nn.functional.scaled_dot_product_attention = fused
        set_max_bytes(model, DEFAULT_MAX_BYTES)
        model.corr_on_demand = None
    has_attention = any(isinstance(m, TwinsBlock) for m in model.modules())
    assert calls or not has_attention, "no fused attention ran: the bounded paths were not taken"


@pytest.fixture(scope="session")
def memory_bounded():
    """``with memory_bounded(model): ...`` runs ``model`` with every memory-bounded path forced on."""
    return _memory_bounded
