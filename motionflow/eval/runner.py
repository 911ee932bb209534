"""The benchmark runner: :func:`evaluate` a method (or a folder of predictions) on a dataset.

:func:`evaluate` resolves the protocol (:mod:`.protocols`: the published one of the dataset and
method unless one is named), builds the dataset with the protocol's loader options, checks the records
of an earlier run against this run's fingerprint (:mod:`.records`), hands the samples still to do to an
engine (:mod:`.engines`: this process, a process pool or Ray), appends every record as it arrives, and
computes the dataset metrics from the merged partials of all records (so a resumed, pooled or
distributed run gives the numbers of an uninterrupted single-process one).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import DatasetNotFoundError, ShapeError, UnknownNameError
from .accumulator import Accumulator
from .engines import EvalSpec, SampleList, build_dataset, check_method_name, dataset_kind, work_units
from .protocols import finalize_metrics, protocol_report
from .report import Report, environment, peak_rss_mb

__all__ = ["EvalSpec", "SampleList", "evaluate", "work_units"]


def _check_arguments(method, predictions_dir, engine: str, workers: int) -> None:
    if (method is None) == (predictions_dir is None):
        raise UnknownNameError("evaluate: expected exactly one of method or predictions_dir, found "
                               + ("both" if method is not None else "neither"))
    if engine not in ("local", "ray"):
        raise UnknownNameError(f"evaluate: unknown engine {engine!r}; valid choices: local, ray")
    if int(workers) < 1:
        raise ShapeError(f"evaluate: expected workers >= 1, found {workers}")
    if predictions_dir is not None and not Path(predictions_dir).is_dir():
        raise DatasetNotFoundError(f"evaluate: predictions folder {predictions_dir} does not exist")


def _object_option_notes(ds, options: dict) -> list[str]:
    """A dataset object is used as given: note every protocol option its attributes contradict."""
    return [f"dataset object: {k}={getattr(ds, k)!r}, the protocol fixes {v!r}"
            for k, v in sorted(options.items()) if hasattr(ds, k) and getattr(ds, k) != v]


def _plan(dataset, method, spec: EvalSpec, protocol: Optional[str], rel_eps) -> tuple:
    """Resolve the protocol, the loader options and the method options; build the dataset. Returns
    ``(spec, dataset object, notes)``."""
    from ..datasets import dataset_class
    from .protocols import get_protocol, merged_dataset_options, run_notes, with_rel_eps
    from .preparation import method_options

    by_name = isinstance(dataset, str)
    kind = dataset_class(dataset).kind if by_name else dataset_kind(dataset)
    name = dataset if by_name else getattr(dataset, "name", type(dataset).__name__)
    if isinstance(method, str):
        check_method_name(method, kind)
    spec.method_name = method if isinstance(method, str) else getattr(method, "name", None)
    spec.protocol = with_rel_eps(get_protocol(protocol, kind, name, spec.method_name), rel_eps)
    notes: list = []
    if by_name and (not spec.protocol.datasets or name in spec.protocol.datasets):
        spec.dataset_options, notes = merged_dataset_options(spec.protocol, spec.dataset_options)
    ds = build_dataset(spec)  # also validates the name, the root and the options in the driver
    if not by_name:
        notes += _object_option_notes(ds, spec.protocol.options())
    spec.dataset_name = getattr(ds, "name", name)
    if kind == "scene":
        spec.preparation = spec.protocol.preparation_for(spec.method_name, spec.dataset_name)
        if isinstance(method, str):
            spec.method_options = method_options(spec.preparation, spec.method_options)
    frames = getattr(ds, "frames", spec.protocol.clip_frames) if kind == "optical" else 2
    notes += run_notes(spec.protocol, spec.dataset_name, spec.method_name, int(frames))
    return spec, ds, notes


def _header(spec: EvalSpec, ds, method) -> dict:
    from .records import dataset_descriptor, fingerprint, method_descriptor

    protocol = {**spec.protocol.to_dict(), "preparation": spec.preparation.to_dict()}
    dataset = dataset_descriptor(ds, spec.dataset_name, spec.root, getattr(ds, "split", spec.split),
                                 spec.dataset_options, isinstance(spec.dataset, str))
    return fingerprint(protocol, dataset, method_descriptor(method, spec.method_options, spec.predictions),
                       spec.write_predictions)


def _resume(path: Optional[Path], header: dict, ds, spec: EvalSpec, n: int, resume: bool) -> tuple[dict, int]:
    """Records of an earlier run to keep (those whose prediction files are unchanged) and how many were dropped."""
    from .records import check_resumed_ids, read_records, stale_records

    if path is None:
        return {}, 0
    if not resume:
        path.unlink(missing_ok=True)
        return {}, 0
    done = {i: r for i, r in read_records(path, header).items() if i < n}
    check_resumed_ids(ds, done, path)
    stale = stale_records(done, spec.predictions if spec.predictions is not None else spec.write_predictions)
    for i in stale:
        del done[i]
    return done, len(stale)


def _stream(spec: EvalSpec, ds, method, todo: list, engine: str, workers: int, chunk_size, address, max_retries):
    from . import engines

    if not todo:
        return iter(())
    if engine == "ray":
        return engines.run_ray(spec, work_units(ds, todo, chunk_size), address=address, max_retries=max_retries,
                               workers=workers)
    if int(workers) > 1:
        return engines.run_pool(spec, work_units(ds, todo, chunk_size), int(workers))
    return engines.run_local(spec, todo, dataset=ds, method=None if isinstance(method, str) else method)


def _runtime(ordered: list, computed: int, resumed: int, recomputed: int, wall: float, engine: str, workers: int) -> dict:
    cuda = [r["peak_cuda_mb"] for r in ordered if r.get("peak_cuda_mb") is not None]
    return {
        "seconds_per_sample": float(np.mean([r["seconds"] for r in ordered])) if ordered else None,
        "wall_seconds_per_sample": float(np.mean([r["wall_seconds"] for r in ordered])) if ordered else None,
        "total_seconds_this_run": wall,
        "samples_this_run": computed,
        "samples_resumed": resumed,
        "samples_recomputed": recomputed,
        "peak_rss_mb": max((r.get("peak_rss_mb") or 0.0 for r in ordered), default=peak_rss_mb()),
        "peak_cuda_mb": max(cuda) if cuda else None,
        "engine": engine,
        "workers": int(workers),
    }


def _report(spec: EvalSpec, ds, ordered: list, notes: list, runtime: dict, label: str) -> Report:
    acc = Accumulator.merged(Accumulator.from_partial(r["partial"]) for r in ordered)
    per_sample = [{"id": r["id"], "index": r["index"], "metrics": r["metrics"], "seconds": r["seconds"]} for r in ordered]
    return Report(
        dataset=spec.dataset_name,
        split=spec.split if spec.split is not None else getattr(ds, "split", None),  # the loader's default split
        method=label,
        metrics=finalize_metrics(spec.protocol, acc),
        per_sample=per_sample,
        runtime=runtime,
        environment=environment(spec.device),
        protocol=protocol_report(spec.protocol, acc, spec.dataset_options, spec.preparation, notes),
    )


def evaluate(
    dataset,
    method=None,
    *,
    predictions_dir=None,
    root=None,
    split: Optional[str] = None,
    dataset_options: Optional[dict] = None,
    method_options: Optional[dict] = None,
    out=None,
    records=None,
    max_samples: Optional[int] = None,
    workers: int = 1,
    engine: str = "local",
    address: Optional[str] = None,
    chunk_size=1,
    device: str = "cpu",
    write_predictions=None,
    resume: bool = True,
    progress: bool = True,
    protocol: Optional[str] = None,
    rel_eps: Optional[float] = None,
    max_retries: int = 3,
    viz_dir=None,
    viz_samples: int = 0,
    viz_arrays: bool = False,
) -> Report:
    """Evaluate ``method`` (or the flows in ``predictions_dir``) on ``dataset``; returns a :class:`Report`.

    Args:
        dataset: a registered dataset name (``"sintel"``, ``"kitti2015"``, ``"av2"``, ...; built with
            ``root``, ``split``, the protocol's loader options and ``dataset_options`` on top), a dataset
            object (``len``, indexing, ``name``, ``kind``) or a list of samples.
        method: a registered method name (built in every worker with the protocol's and then the user's
            ``method_options``), a method object, or None when ``predictions_dir`` is given.
        predictions_dir: flows computed elsewhere, in the dataset's naming (:mod:`motionflow.eval.predictions`).
        out: report path (``.json``; ``.csv`` and ``.md`` are written before it). Records go to
            ``<out stem>.samples.jsonl`` (or ``records``) as they finish; with ``resume`` a rerun of the same
            evaluation skips the samples found there, and a rerun of another one is refused.
        max_samples: evaluate only the first N samples.
        workers: local process pool size (spawned processes, each builds its own dataset and method).
        engine: ``"local"`` (in-process or pool) or ``"ray"`` (one task per work unit on
            ``ray.init(address=address)``; Ray retries a task whose worker died up to ``max_retries`` times).
        chunk_size: samples per work unit, or ``"scene"`` for one unit per scene / log (:func:`work_units`).
        device: torch device for optical-flow methods.
        write_predictions: also save the method's flows in the dataset's naming under this folder.
        protocol: a name of :data:`motionflow.eval.protocols.PROTOCOLS` (default: the published protocol
            of the dataset and method, :func:`~motionflow.eval.protocols.default_protocol`).
        rel_eps: scene flow ``rel = epe / (||gt|| + rel_eps)`` instead of the protocol's (noted).
        viz_dir, viz_samples, viz_arrays: write a picture of each of the first ``viz_samples`` samples
            scored by this run into ``viz_dir`` (lidar with ``viz_arrays``: also the arrays of a Rerun
            recording; :mod:`motionflow.viz.samples`).
    """
    _check_arguments(method, predictions_dir, engine, workers)
    from .records import RecordWriter, records_path, run_lock

    spec = EvalSpec(dataset=SampleList(dataset) if isinstance(dataset, (list, tuple)) else dataset,
                    root=None if root is None else str(root), split=split, dataset_options=dict(dataset_options or {}),
                    method=method, method_options=dict(method_options or {}),
                    predictions=None if predictions_dir is None else str(predictions_dir),
                    write_predictions=None if write_predictions is None else str(write_predictions), device=str(device),
                    viz_dir=None if viz_dir is None else str(viz_dir), viz_samples=int(viz_samples), viz_arrays=bool(viz_arrays))
    spec, ds, notes = _plan(spec.dataset, method, spec, protocol, rel_eps)
    if not isinstance(spec.dataset, str):
        spec.dataset = ds  # sent to workers as is (a name is rebuilt by each worker)
    indices = list(range(len(ds) if max_samples is None else min(len(ds), int(max_samples))))
    header = _header(spec, ds, method)
    path = records_path(out, records)
    label = f"predictions:{predictions_dir}" if method is None else (spec.method_name or type(method).__name__)
    from tqdm.auto import tqdm

    with run_lock(path):
        done, recomputed = _resume(path, header, ds, spec, len(indices), resume)
        todo = [i for i in indices if i not in done]
        new: dict = {}
        writer = RecordWriter(path, header)
        bar = tqdm(total=len(indices), initial=len(indices) - len(todo), desc=f"eval {spec.dataset_name}", unit="sample",
                   disable=not progress)
        wall = time.perf_counter()
        try:
            for record in _stream(spec, ds, method, todo, engine, workers, chunk_size, address, max_retries):
                new[record["index"]] = record
                writer.write(record)
                bar.update(1)
        finally:
            bar.close()
            writer.close()
        wall = time.perf_counter() - wall
        ordered = [{**done, **new}[i] for i in indices]
        runtime = _runtime(ordered, len(new), len(done), recomputed, wall, engine, workers)
        report = _report(spec, ds, ordered, notes, runtime, label)
        if out is not None:
            report.write(out)
    return report
