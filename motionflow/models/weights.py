"""Strict checkpoint loading for every network in :mod:`motionflow.models`.

``load_checkpoint(model, source, key_map=..., aliases=..., unused_keys=...)`` reads an official
checkpoint (or a state dict already in memory) and copies it into ``model``. It is strict in every
direction, and says exactly what is wrong when it refuses:

1. **Unwrap.** Training checkpoints wrap the weights as ``{"model": sd, "optimizer": ...}`` (StreamFlow)
   or ``{"state_dict": sd}`` (Lightning / ptlflow); the wrapper is removed (repeatedly). Released
   files of RAFT / VideoFlow / StreamFlow are saved from ``nn.DataParallel``, so every key starts with
   ``module.``; that prefix (and ``_orig_mod.`` of ``torch.compile``) is stripped when *all* keys carry it.
2. **Map keys explicitly.** ``key_map`` maps checkpoint keys (after step 1) to model keys. The default
   is the identity over ``model.state_dict()`` (our networks keep the official module names), but it is
   still an explicit table: every target must be a key of the model, no two checkpoint keys may map
   to one model key.
3. **Aliases.** ``aliases`` maps an *alias* checkpoint key to the *canonical* checkpoint key holding the
   same tensor in the official model. RAFT's context encoder registers one ``BatchNorm2d`` twice, as
   ``layerN.0.norm3`` and as ``layerN.0.downsample.1`` (see :data:`motionflow.models.raft.RAFT_ALIASES`).
   ``nn.Module.load_state_dict`` copies entries in state-dict order into the shared tensor, so the
   **later** key, ``downsample.1.*``, decides the value the official model computes with. Our model
   owns the module once (as ``downsample.1``), takes the canonical value and consumes the alias after
   checking its shape. (In the released files both keys hold identical tensors; in the parity recipe
   they differ, which is how the parity test pins the order down.) A file without the alias keys (a
   plain ``model.state_dict()`` of our network) also loads: the alias carries no value of its own, and
   :attr:`LoadReport.aliases_absent` lists what was absent.
4. **Unused keys.** ``unused_keys`` names entries the official files carry but the network never reads
   (VideoFlow's final Twins ``norm``, its relative position tables...). They are accepted **by name**
   and dropped; any other key the model does not have is *unexpected*.
5. **Check.** Every checkpoint key must be used exactly once (mapped, alias or unused), every model key
   must receive a value, every shape must match, a floating tensor may not feed an integer buffer (or
   vice versa). All problems are collected and raised together in one
   :class:`~motionflow.errors.CheckpointError` that lists missing, unexpected and mis-shaped keys.
6. **Load** with ``model.load_state_dict(..., strict=True)`` and return a :class:`LoadReport`.

Files are read with ``torch.load(weights_only=True)``. A file that needs arbitrary unpickling (old
training checkpoints that pickled an LR scheduler's bound method, an ``argparse.Namespace``...) is
refused with a message; pass ``allow_pickle=True`` only for files you trust.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Union

import torch
from torch import nn

from ..errors import CheckpointError

#: Where the official weights of each network are published (used in error messages).
OFFICIAL_WEIGHTS: dict[str, str] = {
    "raft": (
        "princeton-vl/RAFT README (https://github.com/princeton-vl/RAFT#demos): download_models.sh "
        "fetches https://www.dropbox.com/s/npt24nvhoojdr0n/models.zip (raft-things.pth, raft-sintel.pth, "
        "raft-kitti.pth, raft-chairs.pth, raft-small.pth), mirrored on Google Drive "
        "https://drive.google.com/drive/folders/1sWDsfuZ3Up38EUQt7-JDTT1HcGHuJgvT"
    ),
    "videoflow-bof": (
        "XiaoyuShi97/VideoFlow README (https://github.com/XiaoyuShi97/VideoFlow#models): Google Drive "
        "folder VideoFlow_ckpt https://drive.google.com/drive/folders/16YqDD_IQpzrVWvDHI9xK3kO0MaXnNIGx "
        "(BOF_things.pth, BOF_sintel.pth, BOF_kitti.pth)"
    ),
    "videoflow-mof": (
        "XiaoyuShi97/VideoFlow README (https://github.com/XiaoyuShi97/VideoFlow#models): Google Drive "
        "folder VideoFlow_ckpt https://drive.google.com/drive/folders/16YqDD_IQpzrVWvDHI9xK3kO0MaXnNIGx "
        "(MOF_things.pth, MOF_sintel.pth, MOF_kitti.pth)"
    ),
    "streamflow": (
        "littlespray/StreamFlow README (https://github.com/littlespray/StreamFlow#checkpoints-preparation): "
        "Google Drive https://drive.google.com/drive/folders/1hkSsoDGB5b59lgcZPpERUqgCTV0o82hf "
        "(FlyingThings, Sintel, KITTI and Spring checkpoints)"
    ),
}

#: Wrapper keys removed around a state dict (StreamFlow training files: ``model``; Lightning: ``state_dict``).
WRAPPER_KEYS = ("model", "state_dict")
#: Key prefixes stripped when every key carries them (``nn.DataParallel`` / DDP, ``torch.compile``).
STRIP_PREFIXES = ("module.", "_orig_mod.")

StateDict = Mapping[str, torch.Tensor]


@dataclass
class LoadReport:
    """What :func:`load_checkpoint` did.

    Attributes:
        source: the file path, or ``"<state_dict>"``.
        wrappers: wrapper keys removed, outermost first (e.g. ``["model"]``).
        prefixes: key prefixes stripped (e.g. ``["module."]``).
        loaded: number of model entries filled.
        aliases: ``{alias: canonical}`` checkpoint keys consumed as aliases.
        aliases_differing: the aliases whose tensor differed from the canonical one (the canonical,
            i.e. the official effective value, was used).
        unused: checkpoint keys accepted by name and dropped.
        aliases_absent: alias keys the file does not carry although their canonical key is there (a
            plain ``model.state_dict()`` of our network: nothing is missing, the alias only duplicates).
    """

    source: str
    wrappers: list = field(default_factory=list)
    prefixes: list = field(default_factory=list)
    loaded: int = 0
    aliases: dict = field(default_factory=dict)
    aliases_differing: list = field(default_factory=list)
    unused: list = field(default_factory=list)
    aliases_absent: list = field(default_factory=list)


def read_checkpoint(path: Union[str, Path], allow_pickle: bool = False, safe_globals: Iterable = (),
                    what: str = "checkpoint") -> Any:
    """``torch.load`` a file onto the CPU with ``weights_only=True`` (the one reader of torch files).

    Args:
        path: the file.
        allow_pickle: let ``torch.load`` unpickle arbitrary objects (only for files you trust); the
            default refuses any file that holds more than tensors, plain containers, numbers and strings.
        safe_globals: classes known to appear in a format's files (e.g. SCOOP's ``argparse.Namespace``),
            allow-listed with ``torch.serialization.safe_globals``: ``weights_only`` stays on.
        what: the kind of file, for messages (``"checkpoint"``, ``"training state"``).

    Raises:
        CheckpointError: the file does not exist, is not a torch file, or needs unpickling arbitrary
            objects while ``allow_pickle`` is False (refused before any of them is built).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} file {str(path)!r} does not exist (expected a .pth/.pt/.tar torch file)")
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch reports every weights-only failure as UnpicklingError; only "Unsupported global" means
        # a readable file that pickles Python objects, anything else is a corrupt / foreign file
        text = str(exc)
        if "Unsupported global" not in text:
            with open(path, "rb") as fh:
                head = fh.read(12)
            if not head.startswith((b"PK", b"\x80")):  # neither a zip archive nor a (legacy) pickle
                raise CheckpointError(
                    f"{what} {str(path)!r} is not a torch file (expected a zip archive written by torch.save, "
                    f"found {path.stat().st_size} bytes starting {head!r})"
                ) from exc
            raise CheckpointError(f"{what} {str(path)!r} is not a readable torch file ({_first_line(text)})") from exc
        if allow_pickle:  # the caller said it trusts this file
            try:
                return torch.load(path, map_location="cpu", weights_only=False)
            except Exception as exc2:
                raise CheckpointError(f"{what} {str(path)!r} could not be read by torch.load ({_first_line(str(exc2))})") from exc2
        detail = text[text.index("Unsupported global") :].split(" was not")[0]
        raise CheckpointError(
            f"{what} {str(path)!r} holds Python objects besides tensors, which torch.load "
            f"(weights_only=True) refuses ({detail}); motionflow does not run code from files it reads"
            + ("; if you trust the file, pass allow_pickle=True" if what == "checkpoint" else "")
        ) from exc
    except Exception as exc:  # corrupt / not a torch file (torch raises e.g. KeyError(101) on a text file)
        raise CheckpointError(
            f"{what} {str(path)!r} is not a torch file (expected a zip archive written by torch.save; "
            f"torch.load failed with {type(exc).__name__}: {_first_line(str(exc))})"
        ) from exc


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "unreadable"


def unwrap_state_dict(obj, source: str = "<state_dict>") -> tuple["OrderedDict[str, torch.Tensor]", list, list]:
    """Remove training wrappers and DataParallel prefixes.

    Args:
        obj: what ``torch.load`` returned: a flat ``{key: tensor}`` dict, or one wrapped in
            ``{"model": ...}`` / ``{"state_dict": ...}`` (possibly with other entries such as
            ``optimizer``, which are ignored together with the wrapper).
        source: name used in error messages.

    Returns:
        ``(state_dict, wrappers, prefixes)``: the flat state dict with prefixes stripped, the wrapper
        keys removed (outermost first) and the prefixes stripped.

    Raises:
        CheckpointError: ``obj`` is not a mapping of names to tensors, or only some keys carry a prefix.
    """
    wrappers: list = []
    while isinstance(obj, Mapping) and not _is_flat(obj):
        inner = [k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)]
        if not inner:
            break
        wrappers.append(inner[0])
        obj = obj[inner[0]]
    if not isinstance(obj, Mapping) or not _is_flat(obj):
        what = type(obj).__name__
        if isinstance(obj, Mapping):
            bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)][:5]
            what = f"a mapping with non-tensor entries {bad}"
        raise CheckpointError(
            f"checkpoint {source}: expected a state dict {{name: tensor}}, optionally wrapped as "
            f"{{'model': ...}} or {{'state_dict': ...}}; found {what}"
        )
    sd = OrderedDict(obj)
    prefixes: list = []
    changed = True
    while changed and sd:
        changed = False
        for prefix in STRIP_PREFIXES:
            n = sum(k.startswith(prefix) for k in sd)
            if n == len(sd):
                sd = OrderedDict((k[len(prefix):], v) for k, v in sd.items())
                prefixes.append(prefix)
                changed = True
            elif n:
                some = [k for k in sd if not k.startswith(prefix)][:5]
                raise CheckpointError(
                    f"checkpoint {source}: {n} of {len(sd)} keys start with {prefix!r} but others do not "
                    f"(e.g. {some}); a checkpoint must be saved either wrapped or unwrapped"
                )
    return sd, wrappers, prefixes


def _is_flat(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def load_checkpoint(
    model: nn.Module,
    source: Union[str, Path, Mapping],
    key_map: Optional[Mapping[str, str]] = None,
    aliases: Optional[Mapping[str, str]] = None,
    unused_keys: Iterable[str] = (),
    allow_pickle: bool = False,
) -> LoadReport:
    """Load ``source`` into ``model``; every key used exactly once, every shape checked.

    Args:
        model: the network (its ``state_dict()`` keys are the targets).
        source: a checkpoint path, or a state dict (possibly wrapped / ``module.``-prefixed).
        key_map: ``{checkpoint key: model key}`` after unwrapping; default: the identity over
            ``model.state_dict()``.
        aliases: ``{alias checkpoint key: canonical checkpoint key}``: both name one tensor of the
            official model and the canonical one is the value the official load ends up with (the
            later one in state-dict order). The alias is consumed, its shape checked, its value dropped.
        unused_keys: checkpoint keys the official files carry but the network never reads; accepted by
            name (absent ones are fine) and dropped.
        allow_pickle: let ``torch.load`` unpickle arbitrary objects (only for trusted files).

    Returns:
        A :class:`LoadReport`.

    Raises:
        CheckpointError: unreadable file, or a listing of every missing, unexpected, duplicated and
            mis-shaped key.
    """
    if isinstance(source, (str, Path)):
        name = repr(str(source))
        raw = read_checkpoint(source, allow_pickle=allow_pickle)
    elif isinstance(source, Mapping):
        name = "<state_dict>"
        raw = source
    else:
        raise CheckpointError(
            f"load_checkpoint source: expected a file path or a state dict, found {type(source).__name__}"
        )
    sd, wrappers, prefixes = unwrap_state_dict(raw, name)
    target = model.state_dict()
    aliases = dict(aliases or {})
    key_map = dict({k: k for k in target} if key_map is None else key_map)
    problems = _key_map_problems(key_map, target, aliases)
    match = _match_keys(sd, key_map, target, aliases, set(unused_keys))
    missing = [mk for ck, mk in key_map.items() if mk in target and ck not in sd]
    unloaded = sorted(set(target) - set(key_map.values()))
    for label, items in (("missing keys", missing), ("model keys no checkpoint key maps to", unloaded),
                         ("unexpected keys", match.unexpected), ("shape mismatches", match.shape_errors),
                         ("dtype kind mismatches", match.dtype_errors)):
        if items:
            problems.append(f"{label} ({len(items)}): {items}")
    if problems:
        raise CheckpointError(
            f"checkpoint {name} does not match {type(model).__name__}: " + "; ".join(problems)
        )

    # cast floating tensors to the model's dtype (fp16 checkpoints into an fp32 model and back)
    mapped = match.mapped
    for mk, tensor in mapped.items():
        if tensor.dtype != target[mk].dtype:
            mapped[mk] = tensor.to(target[mk].dtype)
    model.load_state_dict(mapped, strict=True)
    return LoadReport(
        source=name,
        wrappers=wrappers,
        prefixes=prefixes,
        loaded=len(mapped),
        aliases=match.used_aliases,
        aliases_differing=match.differing,
        aliases_absent=[a for a, c in aliases.items() if a not in sd and c in sd],
        unused=match.dropped,
    )


def _key_map_problems(key_map: dict, target: Mapping, aliases: dict) -> list:
    """What is wrong with the key map itself: targets that are not model keys, several checkpoint keys
    sent to one model key, aliases of keys the map does not load."""
    problems: list = []
    bad_targets = sorted(v for v in key_map.values() if v not in target)
    if bad_targets:
        problems.append(f"key_map targets that are not keys of the model: {bad_targets}")
    seen: dict = {}
    for ck, mk in key_map.items():
        seen.setdefault(mk, []).append(ck)
    doubled = {mk: cks for mk, cks in seen.items() if len(cks) > 1}
    if doubled:
        problems.append(f"key_map sends several checkpoint keys to one model key: {doubled}")
    for alias, canonical in aliases.items():
        if canonical not in key_map:
            problems.append(f"alias {alias!r} points to {canonical!r}, which the key_map does not load")
    return problems


@dataclass
class _KeyMatch:
    """How the checkpoint's keys met the key map (:func:`_match_keys`)."""

    mapped: "OrderedDict[str, torch.Tensor]" = field(default_factory=OrderedDict)
    unexpected: list = field(default_factory=list)
    shape_errors: list = field(default_factory=list)
    dtype_errors: list = field(default_factory=list)
    used_aliases: dict = field(default_factory=dict)
    differing: list = field(default_factory=list)
    dropped: list = field(default_factory=list)


def _match_keys(sd: Mapping, key_map: dict, target: Mapping, aliases: dict, unused: set) -> _KeyMatch:
    """Send every checkpoint key to its model key (shape and dtype kind checked), consume aliases
    (shape checked against their canonical key), drop known unused keys, collect the rest."""
    m = _KeyMatch()
    for ck, tensor in sd.items():
        if ck in key_map:
            mk = key_map[ck]
            if mk not in target:
                continue  # already reported as a bad target
            want = target[mk]
            if tuple(tensor.shape) != tuple(want.shape):
                m.shape_errors.append(f"{ck}: checkpoint {tuple(tensor.shape)} vs model {mk} {tuple(want.shape)}")
            elif tensor.is_floating_point() != want.is_floating_point():
                m.dtype_errors.append(f"{ck}: checkpoint {tensor.dtype} vs model {mk} {want.dtype}")
            else:
                m.mapped[mk] = tensor
        elif ck in aliases:
            canonical = aliases[ck]
            if canonical not in sd:
                continue  # the canonical key is then reported missing
            if tuple(tensor.shape) != tuple(sd[canonical].shape):
                m.shape_errors.append(
                    f"{ck} (alias of {canonical}): {tuple(tensor.shape)} vs {tuple(sd[canonical].shape)}"
                )
                continue
            m.used_aliases[ck] = canonical
            if not torch.equal(tensor, sd[canonical]):
                m.differing.append(ck)
        elif ck in unused:
            m.dropped.append(ck)
        else:
            m.unexpected.append(ck)
    return m


def no_checkpoint_error(method: str) -> CheckpointError:
    """The error a learned method raises when built without weights: says where they are published."""
    where = OFFICIAL_WEIGHTS.get(method, "the method's official repository")
    return CheckpointError(
        f"method {method!r} is a learned network and needs its official weights: pass checkpoint=PATH "
        f"(CLI: --checkpoint PATH). The weights are published in the {where}. "
        f"Use weights='random' only for benchmarks/tests; without a checkpoint the default method "
        f"'classical' needs no weights."
    )
