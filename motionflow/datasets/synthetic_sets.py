"""``synthetic-flow`` and ``synthetic-lidar``: the lead's seeded generators (:mod:`.synthetic`) as datasets.

Sample ``i`` is generated with ``seed + i``, so a dataset is reproducible and needs no files
(``root`` is ignored). Ids are ``synthetic-XXXXXX`` with the seed.
"""

from __future__ import annotations

from typing import Optional

from ..errors import ShapeError
from .base import Dataset


class _Synthetic(Dataset):
    def __init__(self, root=None, split=None, num_samples: int = 8, seed: int = 0,
                 max_samples: Optional[int] = None, **generator_options):
        if int(num_samples) < 0:
            raise ShapeError(f"{self.name} num_samples: expected >= 0, found {num_samples}")
        import inspect

        accepted = set(inspect.signature(self._generator()).parameters) - {"seed", "num_frames", "size"}
        unknown = sorted(set(generator_options) - accepted)
        if unknown:
            from ..errors import UnknownNameError

            raise UnknownNameError(f"{self.name}: unknown options {unknown}; valid generator options: {sorted(accepted)}")
        self.num_samples, self.seed, self.generator_options = int(num_samples), int(seed), generator_options
        super().__init__(None, split, max_samples)

    def _index(self) -> list[dict]:
        return [{"id": f"synthetic-{self.seed + i:06d}", "seed": self.seed + i} for i in range(self.num_samples)]

    def _load(self, rec: dict):
        sample = self._generate(rec["seed"])
        sample.id = rec["id"]
        sample.meta.setdefault("dataset", self.name)
        sample.meta["seed"] = rec["seed"]
        return sample


class SyntheticFlow(_Synthetic):
    """Synthetic optical-flow clips (options: ``frames`` (T), ``size`` ``(H, W)``, and the generator's)."""

    name = "synthetic-flow"
    kind = "optical"

    def __init__(self, root=None, split=None, num_samples: int = 8, seed: int = 0, frames: int = 2,
                 size=(96, 128), max_samples: Optional[int] = None, **generator_options):
        self.frames, self.size = int(frames), tuple(size)
        super().__init__(root, split, num_samples, seed, max_samples, **generator_options)

    @staticmethod
    def _generator():
        from .synthetic import synthetic_clip

        return synthetic_clip

    def _generate(self, seed: int):
        return self._generator()(num_frames=self.frames, size=self.size, seed=seed, **self.generator_options)


class SyntheticLidar(_Synthetic):
    """Synthetic lidar pairs (options are passed to ``synthetic_lidar_pair``)."""

    name = "synthetic-lidar"
    kind = "scene"

    @staticmethod
    def _generator():
        from .synthetic import synthetic_lidar_pair

        return synthetic_lidar_pair

    def _generate(self, seed: int):
        return self._generator()(seed=seed, **self.generator_options)
