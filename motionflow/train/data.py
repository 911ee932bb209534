"""Training data: weighted dataset mixtures of T-frame clips, deterministic sharded sampling, batching.

**Dataset terms.** ``--dataset NAME[:WEIGHT],...``: each ``NAME`` is a registered loader of
:mod:`motionflow.datasets` used on its training split (``sintel``, ``kitti2015``, ``kitti2012``, ``chairs``,
``middlebury``, ``synthetic-flow``), an alias (``sintel-clean`` / ``sintel-final``: one Sintel pass;
``synthetic``: ``synthetic-flow``, no root needed) or a published stage (:data:`STAGES`). ``WEIGHT`` is
a positive integer repetition factor, as RAFT's ``100*sintel_clean``: the term counts ``WEIGHT`` times
in the epoch.

**Stages** (RAFT ``core/datasets.py:fetch_dataloader``, its augmentation per dataset in
:data:`motionflow.train.augment.AUGMENT_PRESETS`):

* ``stage-chairs``: FlyingChairs ``train`` split.
* ``stage-things``: FlyingThings3D clean + final passes.
* ``stage-sintel``: ``100*sintel-clean + 100*sintel-final + 200*kitti2015 + 5*hd1k + things-clean``
  (RAFT's ``C+T+K+S+H``; VideoFlow's BOF uses the same, MOF weights KITTI 50 instead of 200).
* ``stage-kitti``: KITTI 2015 training, no flips.

motionflow has **no FlyingThings3D and no HD1K loader**: in ``stage-sintel`` these two terms are
skipped (:attr:`Mixture.skipped` lists them and the CLI prints them), so the mix is
``100*clean + 100*final + 200*kitti2015``; ``stage-things`` and a plain ``things`` / ``hd1k`` raise
:class:`~motionflow.errors.UnknownNameError`.

**Roots.** With one root for several datasets, a term looks for its RAFT folder name below it
(``Sintel``, ``KITTI``, ``KITTI2012``, ``FlyingChairs_release``, ``middlebury``; :data:`ROOT_SUBDIRS`) and
falls back to the root itself; ``roots={name: dir}`` in the config overrides per loader.

**Sintel** is read with ``use_invalid=False``: RAFT and VideoFlow supervise every pixel of the
``.flo`` files (their valid mask is ``|u|, |v| < 1000``), including the pixels of Sintel's ``invalid/``
masks that the evaluation excludes.

**Clips.** Every sample is a clip of exactly ``T`` frames (the loader's ``frames`` option: Sintel
``clips="tile"``, so every pair of a clip has ground truth; KITTI centred on the annotated pair, which
is then the only pair with ground truth; FlyingChairs has pairs only). The batch holds ``frames``
``(B, T, 3, h, w)`` float in [0, 255], ``flow`` ``(B, T-1, 2, h, w)`` and ``valid`` ``(B, T-1, h, w)``
(False for pairs without ground truth), optionally ``backward`` / ``backward_valid`` likewise.

**Sampling** (:class:`ClipSampler`) is a pure function of ``(seed, step)``: epoch ``e`` visits the
mixture in the order ``randperm(N, seed + e)``; global step ``s`` takes positions
``s*G .. (s+1)*G - 1`` of that stream (``G`` = global batch) and rank ``r`` of ``W`` the ``r``-th slice of
``G / W``. Each sample's augmentation is seeded by ``(seed, position)``. So a run resumed at step ``s`` sees
exactly the batches of an uninterrupted run, and ``W`` processes see together exactly the batch of
one process with the same global batch.
"""

from __future__ import annotations

import bisect
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import ShapeError, UnknownNameError
from .augment import AUGMENT_PRESETS, AugmentParams, augment_clip

#: RAFT's folder names under ``datasets/`` (a term looks for ROOT/<name> before ROOT itself).
ROOT_SUBDIRS = {
    "sintel": "Sintel",
    "kitti2015": "KITTI",
    "kitti2012": "KITTI2012",
    "chairs": "FlyingChairs_release",
    "middlebury": "middlebury",
}
#: Training split of each loader.
TRAIN_SPLITS = {"sintel": "training", "kitti2015": "training", "kitti2012": "training", "chairs": "train", "middlebury": "training"}
#: Default augmentation preset of a loader used on its own.
DEFAULT_AUGMENT = {"sintel": "sintel", "kitti2015": "kitti", "kitti2012": "kitti", "chairs": "chairs", "middlebury": "sintel"}
#: Published datasets motionflow has no loader for (skipped inside stages, an error alone).
NO_LOADER = {
    "things": "FlyingThings3D (RAFT/VideoFlow 'things' stage)",
    "things-clean": "FlyingThings3D clean pass",
    "things-final": "FlyingThings3D final pass",
    "hd1k": "HD1K (RAFT 'sintel' stage, 5x)",
}
#: Names that are not loaders: alias -> (loader, options).
ALIASES = {
    "sintel-clean": ("sintel", {"pass_name": "clean"}),
    "sintel-final": ("sintel", {"pass_name": "final"}),
    "synthetic": ("synthetic-flow", {}),
    "kitti": ("kitti2015", {}),
}
#: Loaders usable for training (they have ground-truth flow).
TRAINABLE = ("sintel", "kitti2015", "kitti2012", "chairs", "middlebury", "synthetic-flow")


@dataclass(frozen=True)
class Term:
    """One weighted component of a mixture: ``weight`` x loader ``name`` with ``options``, augmented by ``augment``."""

    name: str
    weight: int = 1
    options: tuple = ()
    augment: Optional[str] = None
    label: str = ""


#: Published stage mixtures (see the module docstring); each entry ``(term name, weight, augment preset)``.
STAGES: dict[str, list] = {
    "stage-chairs": [("chairs", 1, "chairs")],
    "stage-things": [("things-clean", 1, "things"), ("things-final", 1, "things")],
    "stage-sintel": [
        ("sintel-clean", 100, "sintel"),
        ("sintel-final", 100, "sintel"),
        ("kitti2015", 200, "kitti-mix"),
        ("hd1k", 5, "hd1k"),
        ("things-clean", 1, "sintel"),
    ],
    "stage-kitti": [("kitti2015", 1, "kitti")],
}


def parse_dataset_spec(spec) -> list:
    """``"sintel-clean:100,kitti2015:200"`` (or a list of such strings) -> ``[(name, weight), ...]``.

    Raises:
        UnknownNameError: empty spec or a weight that is not a positive integer.
    """
    items = spec if isinstance(spec, (list, tuple)) else [spec]
    out = []
    for item in items:
        if not isinstance(item, str):
            raise UnknownNameError(f"dataset: expected 'NAME[:WEIGHT],...' strings, found {item!r}")
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            name, _, weight = part.partition(":")
            name = name.strip()
            if not weight:
                w = 1
            else:
                try:
                    w = int(weight)
                except ValueError:
                    w = -1
                if w < 1 or str(w) != weight.strip():
                    raise UnknownNameError(
                        f"dataset: weight of {name!r} must be a positive integer repetition factor "
                        f"(NAME[:WEIGHT], e.g. sintel-clean:100), found {weight!r}"
                    )
            out.append((name, w))
    if not out:
        raise UnknownNameError(f"dataset: expected at least one NAME[:WEIGHT], found {spec!r}")
    return out


def _valid_names() -> list:
    return sorted(set(TRAINABLE) | set(ALIASES) | set(STAGES))


def _loader_options(loader: str, opts: dict) -> tuple:
    opts = dict(opts)
    if loader == "sintel":
        # RAFT / VideoFlow train on every Sintel pixel (valid = |flow| < 1000), not only outside invalid/
        opts.setdefault("use_invalid", False)
    return tuple(sorted(opts.items()))


def expand_terms(spec) -> tuple[list, list]:
    """Dataset spec -> ``(terms, skipped)``; stages expand to their published terms (weights multiply)."""
    terms, skipped = [], []
    for name, weight in parse_dataset_spec(spec):
        if name in STAGES:
            for sub, w, aug in STAGES[name]:
                if sub in NO_LOADER:
                    skipped.append(f"{w * weight}*{sub} ({NO_LOADER[sub]}: no loader in motionflow)")
                    continue
                loader, opts = ALIASES.get(sub, (sub, {}))
                terms.append(Term(loader, w * weight, _loader_options(loader, opts), aug, sub))
            continue
        if name in NO_LOADER:
            raise UnknownNameError(
                f"dataset: {name!r} ({NO_LOADER[name]}) has no loader in motionflow; valid choices: {', '.join(_valid_names())}"
            )
        loader, opts = ALIASES.get(name, (name, {}))
        if loader not in TRAINABLE:
            raise UnknownNameError(f"dataset: unknown training dataset {name!r}; valid choices: {', '.join(_valid_names())}")
        terms.append(Term(loader, weight, _loader_options(loader, opts), DEFAULT_AUGMENT.get(loader, "default"), name))
    if not terms:
        raise UnknownNameError(f"dataset: nothing left to train on in {spec!r} after skipping: {'; '.join(skipped)}")
    return terms, skipped


def term_root(term: Term, root, roots: Optional[dict] = None):
    """The folder a term's loader reads (see the module docstring)."""
    if term.name == "synthetic-flow":
        return None
    if roots and term.name in roots:
        return roots[term.name]
    if root is None:
        from ..errors import DatasetNotFoundError

        raise DatasetNotFoundError(f"dataset {term.label or term.name!r}: needs --root (only 'synthetic' needs none)")
    sub = Path(root) / ROOT_SUBDIRS.get(term.name, term.name)
    return sub if sub.is_dir() else Path(root)


def build_loader(term: Term, root, frames: int, roots=None, synthetic: Optional[dict] = None):
    """The :mod:`motionflow.datasets` loader of one term, with T-frame clips."""
    from ..datasets import dataset_class, get_dataset

    opts = dict(term.options)
    accepts = inspect.signature(dataset_class(term.name).__init__).parameters
    if "frames" in accepts:
        opts["frames"] = frames
    elif frames != 2:
        raise ShapeError(f"frames: dataset {term.label or term.name!r} has image pairs only, found frames={frames}")
    if term.name == "synthetic-flow":
        opts.update(synthetic or {})
        return get_dataset(term.name, None, **opts)
    return get_dataset(term.name, term_root(term, root, roots), split=TRAIN_SPLITS[term.name], **opts)


class Mixture(torch.utils.data.Dataset):
    """The weighted concatenation of the terms' loaders, returning augmented clips.

    ``mixture[(position, seed)]`` -> dict of tensors (see the module docstring). ``position`` indexes
    the weighted concatenation (term ``k`` occupies ``weight_k * len(loader_k)`` positions);
    ``seed`` seeds the augmentation.

    Args:
        terms: :class:`Term` list; loaders: their datasets (same order).
        frames: T; crop_size: ``(h, w)``; augment: apply the augmentation (False: centre crop only).
        backward: also return ``backward`` / ``backward_valid`` (from ``meta["backward_flow"]``).
        skipped: descriptions of stage terms left out (no loader).
        add_noise: RAFT's ``--add_noise``: Gaussian noise of standard deviation ``U(0, 5)`` added to the
            frames, clamped to [0, 255] (RAFT draws one deviation per batch in the training loop; here one
            per clip, from the clip's seed, so noise does not depend on how the batch is split over ranks).
    """

    def __init__(self, terms, loaders, frames: int, crop_size, augment: bool = True, backward: bool = False, skipped=(),
                 add_noise: bool = False):
        self.add_noise = bool(add_noise)
        self.terms, self.loaders = list(terms), list(loaders)
        self.frames, self.crop_size, self.augment, self.backward = int(frames), tuple(crop_size), augment, backward
        self.skipped = list(skipped)
        self.sizes = [t.weight * len(d) for t, d in zip(self.terms, self.loaders)]
        for t, d in zip(self.terms, self.loaders):
            if len(d) == 0:
                raise ShapeError(f"dataset {t.label or t.name!r}: the loader found no samples")
        self.offsets = np.cumsum([0] + self.sizes).tolist()
        self.params = [AUGMENT_PRESETS[t.augment or "default"].with_crop(self.crop_size) for t in self.terms]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def describe(self) -> str:
        parts = [f"{t.weight}*{t.label or t.name}({len(d)})" for t, d in zip(self.terms, self.loaders)]
        return " + ".join(parts) + f" = {len(self)} clips"

    def locate(self, position: int) -> tuple:
        """``position`` -> ``(term index, sample index in its loader)``."""
        k = bisect.bisect_right(self.offsets, position) - 1
        return k, (position - self.offsets[k]) % len(self.loaders[k])

    def _ground_truth(self, sample, t: int):
        h, w = sample.frames.shape[-2:]
        flow = np.zeros((t - 1, 2, h, w), np.float32)
        valid = np.zeros((t - 1, h, w), bool)
        back = np.zeros_like(flow) if self.backward else None
        back_valid = np.zeros_like(valid) if self.backward else None
        if sample.flow is not None:
            for j, pair in enumerate(sample.pair_index):
                flow[pair] = sample.flow[j]
                valid[pair] = sample.valid[j] & np.isfinite(sample.flow[j]).all(0)
                if self.backward and "backward_flow" in sample.meta:
                    back[pair] = sample.meta["backward_flow"][j]
                    bv = sample.meta.get("backward_valid")
                    back_valid[pair] = (np.ones((h, w), bool) if bv is None else bv[j]) & np.isfinite(back[pair]).all(0)
        return flow, valid, back, back_valid

    def __getitem__(self, key):
        position, seed = key if isinstance(key, tuple) else (key, 0)
        k, index = self.locate(int(position))
        sample = self.loaders[k][index]
        t = sample.frames.shape[0]
        if t != self.frames:
            raise ShapeError(f"sample {sample.id!r}: expected a clip of {self.frames} frames, found {t} (scene too short?)")
        flow, valid, back, back_valid = self._ground_truth(sample, t)
        rng = np.random.default_rng(seed)
        if self.augment:
            out = augment_clip(sample.frames, flow, valid, self.params[k], rng, back, back_valid)
        else:
            out = _centre_crop(sample.frames, flow, valid, back, back_valid, self.crop_size, sample.id)
        item = {"frames": out[0], "flow": out[1], "valid": out[2]}
        if self.add_noise:
            stdv = rng.uniform(0.0, 5.0)
            g = torch.Generator().manual_seed(int(rng.integers(2**62)))
            noise = torch.randn(item["frames"].shape, generator=g)
            item["frames"] = (item["frames"] + stdv * noise).clamp(0.0, 255.0)
        if self.backward:
            item["backward"], item["backward_valid"] = out[3], out[4]
        return item


def _centre_crop(frames, flow, valid, back, back_valid, crop_size, sample_id):
    h, w = frames.shape[-2:]
    ch, cw = crop_size
    if h < ch or w < cw:
        raise ShapeError(f"sample {sample_id!r}: {h}x{w} is smaller than the crop {ch}x{cw} (enable augmentation to rescale)")
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    sl = (Ellipsis, slice(y0, y0 + ch), slice(x0, x0 + cw))
    out = [torch.as_tensor(np.ascontiguousarray(frames[sl])).float(), torch.as_tensor(np.ascontiguousarray(flow[sl])),
           torch.as_tensor(np.ascontiguousarray(valid[sl]))]
    if back is not None:
        out += [torch.as_tensor(np.ascontiguousarray(back[sl])), torch.as_tensor(np.ascontiguousarray(back_valid[sl]))]
    return out


@dataclass
class ClipSampler:
    """Batch sampler: for steps ``start_step .. max_steps-1`` yields this rank's list of ``(position, seed)`` keys.

    Args:
        length: mixture size N; global_batch: G (all ranks); rank, world_size: this process's slice.
        seed: run seed; start_step: first step (resume); max_steps: one past the last step.
    """

    length: int
    global_batch: int
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    start_step: int = 0
    max_steps: int = 1
    _perm_cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.global_batch % self.world_size:
            raise ShapeError(
                f"batch_size: the global batch {self.global_batch} must be divisible by the number of processes {self.world_size}"
            )
        if self.length < 1:
            raise ShapeError("dataset: the training mixture is empty")

    @property
    def local_batch(self) -> int:
        return self.global_batch // self.world_size

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perm_cache:
            self._perm_cache.clear()
            g = torch.Generator().manual_seed(int(self.seed) * 1_000_003 + epoch)
            self._perm_cache[epoch] = torch.randperm(self.length, generator=g).numpy()
        return self._perm_cache[epoch]

    def keys(self, step: int) -> list:
        """This rank's ``(position, seed)`` keys of global step ``step``."""
        first = step * self.global_batch + self.rank * self.local_batch
        out = []
        for g in range(first, first + self.local_batch):
            epoch, i = divmod(g, self.length)
            seed = int(np.random.SeedSequence([int(self.seed), g]).generate_state(1)[0])
            out.append((int(self._perm(epoch)[i]), seed))
        return out

    def __iter__(self):
        for step in range(self.start_step, self.max_steps):
            yield self.keys(step)

    def __len__(self) -> int:
        return max(0, self.max_steps - self.start_step)


def build_mixture(dataset_spec, root=None, frames: int = 2, crop_size=(368, 496), augment: bool = True,
                  roots=None, synthetic: Optional[dict] = None, backward: bool = False, add_noise: bool = False) -> Mixture:
    """Terms -> loaders -> :class:`Mixture` (see the module docstring)."""
    terms, skipped = expand_terms(dataset_spec)
    loaders = [build_loader(t, root, frames, roots, synthetic) for t in terms]
    return Mixture(terms, loaders, frames, crop_size, augment=augment, backward=backward, skipped=skipped, add_noise=add_noise)
