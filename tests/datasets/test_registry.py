"""get_dataset / list_datasets and the synthetic sets."""

from __future__ import annotations

import numpy as np
import pytest

from motionflow.datasets import DATASETS, dataset_class, get_dataset, list_datasets
from motionflow.errors import DatasetNotFoundError, UnknownNameError


def test_names_and_kinds():
    names = list_datasets()
    for n in ("sintel", "kitti2015", "kitti2012", "chairs", "middlebury", "frames", "video", "av2",
              "kitti-sf-flownet3d", "kitti-sf-hplflownet", "lidar-kitti", "argoverse-nsfp", "nuscenes-nsfp",
              "waymo-fnsf", "pairs", "velodyne", "synthetic-flow", "synthetic-lidar"):
        assert n in names
    for n in DATASETS:
        cls = dataset_class(n)
        assert cls.name == n and cls.kind in ("optical", "scene")
        assert cls.__doc__ and len(cls.__doc__) > 40


def test_unknown_name_and_option(tmp_path):
    with pytest.raises(UnknownNameError, match=r"'sintel2'.*chairs.*velodyne"):
        get_dataset("sintel2", tmp_path)
    with pytest.raises(UnknownNameError, match=r"dataset 'sintel': unknown option 'colour'; valid options: "):
        get_dataset("sintel", tmp_path, colour=True)
    with pytest.raises(DatasetNotFoundError):
        get_dataset("kitti2015", tmp_path / "missing")


def test_synthetic_sets():
    ds = get_dataset("synthetic-flow", None, num_samples=3, seed=5, frames=3, size=(32, 40))
    assert len(ds) == 3 and ds.ids == ["synthetic-000005", "synthetic-000006", "synthetic-000007"]
    a, b = ds[1], ds[1]
    assert a.frames.shape == (3, 3, 32, 40) and a.flow.shape == (2, 2, 32, 40)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert not np.array_equal(ds[0].frames, a.frames)
    lid = get_dataset("synthetic-lidar", None, num_samples=2)
    s = lid[0]
    assert lid.kind == "scene" and s.id == "synthetic-000000" and s.flow.shape == s.pc1.shape
    with pytest.raises(UnknownNameError, match="nope"):
        get_dataset("synthetic-lidar", None, nope=1)
    assert len(get_dataset("synthetic-flow", None, num_samples=5, max_samples=2)) == 2
