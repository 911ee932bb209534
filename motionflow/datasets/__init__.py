"""Dataset loaders: ``get_dataset(name, root, split=..., **options)``.

Each loader lists its samples at construction (no pixel or point data is read), supports ``len()``,
indexing and ``max_samples``, and returns :class:`motionflow.types.FlowSample` (``kind ==
"optical"``) or :class:`motionflow.types.SceneFlowSample` (``kind == "scene"``) with a stable,
file-derived ``id``. Each loader's docstring gives its expected tree and where to download it.
"""

from __future__ import annotations

import importlib
from typing import Optional

from ..errors import UnknownNameError

# name -> "module:class" (imported on first use)
DATASETS: dict[str, str] = {
    "sintel": "motionflow.datasets.sintel:Sintel",
    "kitti2015": "motionflow.datasets.kitti:KITTI2015",
    "kitti2012": "motionflow.datasets.kitti:KITTI2012",
    "chairs": "motionflow.datasets.chairs:FlyingChairs",
    "middlebury": "motionflow.datasets.middlebury:Middlebury",
    "frames": "motionflow.datasets.frames:FrameClips",
    "video": "motionflow.datasets.frames:VideoClips",
    "av2": "motionflow.datasets.av2:Argoverse2SceneFlow",
    "kitti-sf-flownet3d": "motionflow.datasets.lidar_npz:KittiSFFlowNet3D",
    "kitti-sf-hplflownet": "motionflow.datasets.lidar_npz:KittiSFHPLFlowNet",
    "lidar-kitti": "motionflow.datasets.lidar_npz:LidarKITTI",
    "argoverse-nsfp": "motionflow.datasets.lidar_npz:NSFPArgoverse",
    "nuscenes-nsfp": "motionflow.datasets.lidar_npz:NSFPNuScenes",
    "waymo-fnsf": "motionflow.datasets.lidar_npz:WaymoFNSF",
    "pairs": "motionflow.datasets.lidar_npz:PointPairs",
    "velodyne": "motionflow.datasets.velodyne:VelodyneSequence",
    "synthetic-flow": "motionflow.datasets.synthetic_sets:SyntheticFlow",
    "synthetic-lidar": "motionflow.datasets.synthetic_sets:SyntheticLidar",
}

# option spellings the CLI uses that are not Python identifiers or differ from the keyword
_ALIASES = {"pass": "pass_name", "pass_": "pass_name", "dstype": "pass_name"}


def list_datasets() -> list[str]:
    """The registered dataset names, sorted."""
    return sorted(DATASETS)


def dataset_class(name: str):
    """The loader class registered under ``name``."""
    if name not in DATASETS:
        raise UnknownNameError(f"unknown dataset {name!r}; valid choices: {', '.join(list_datasets())}")
    module, cls = DATASETS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get_dataset(name: str, root=None, split: Optional[str] = None, **options):
    """Build the loader ``name`` on ``root``.

    Args:
        name: a name from :func:`list_datasets`.
        root: the dataset root (ignored by the synthetic sets).
        split: the split; None picks the loader's default (``training`` for Sintel/KITTI/Middlebury,
            ``val`` for chairs, AV2 and the NSFP sets, ``all`` for the other lidar sets).
        options: loader keywords (``pass`` for Sintel's pass, ``frames``, ``max_samples`` ...).

    Raises:
        UnknownNameError: unknown dataset name or option (the message lists the valid ones).
        DatasetNotFoundError: the root or a required sub-folder is missing.
    """
    from ..factory import build, check_options

    cls = dataset_class(name)
    options = {_ALIASES.get(k, k): v for k, v in options.items()}
    check_options(cls, options, f"dataset {name!r}", fixed=("root", "split"))
    if split is not None:
        options["split"] = split
    return build(cls, options, f"dataset {name!r}", root, checked=True)


__all__ = ["DATASETS", "dataset_class", "get_dataset", "list_datasets"]
