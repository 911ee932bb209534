"""Where samples are evaluated: in this process, in a local process pool, or on a Ray cluster.

Work is split into per-sample units. :func:`evaluate_sample` predicts one sample (or reads its
prediction file), scores it under the protocol and returns its *record*: the sample id, its metrics,
its accumulator partial (exact sums and counts, :mod:`motionflow.eval.accumulator`), the prediction
files it read or wrote, wall time and peak memory. Every engine yields records as they finish; the
driver (:func:`motionflow.eval.runner.evaluate`) writes them and merges the partials, so a single
process, a pool (``workers``) and Ray (``engine="ray"``) give bit-identical numbers.

Each worker process rebuilds the dataset and the method from the picklable :class:`EvalSpec` once
(cached per process). Ray (``pip install motionflow[ray]``, imported lazily): ``ray.init(address=...)``
joins a cluster (``"auto"`` or ``"ray://host:10001"``), without an address a local instance starts with
``num_cpus=workers``; a task that dies with its worker is retried up to ``max_retries`` times, an
exception raised by the evaluation itself (a missing prediction, a bad shape) stops the run with that
message.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

from ..errors import MotionflowError, ShapeError, UnknownNameError, require
from .accumulator import Accumulator
from .protocols import NO_PREPARATION, Protocol, ScenePreparation, finalize_metrics, sample_partial
from .report import peak_rss_mb


@dataclass
class EvalSpec:
    """A picklable recipe: each worker process builds its own dataset and method from it.

    ``dataset`` is a registered name (built with ``get_dataset(dataset, root, split=..., **options)``)
    or a dataset object (sent as is). ``method`` is a registered name (built with the factory and
    ``method_options``), a method object, or None when ``predictions`` is a folder. ``protocol`` and
    ``preparation`` come from :mod:`.protocols`; ``dataset_name`` names the prediction files,
    ``method_name`` picks the preparation.
    """

    dataset: Any
    root: Optional[str] = None
    split: Optional[str] = None
    dataset_options: dict = field(default_factory=dict)
    method: Any = None
    method_options: dict = field(default_factory=dict)
    predictions: Optional[str] = None
    write_predictions: Optional[str] = None
    device: str = "cpu"
    protocol: Optional[Protocol] = None
    preparation: ScenePreparation = NO_PREPARATION
    dataset_name: str = ""
    method_name: Optional[str] = None
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    threads: Optional[int] = None
    #: pictures of the first ``viz_samples`` samples into ``viz_dir`` (:mod:`motionflow.viz.samples`; with
    #: ``viz_arrays`` also the lidar arrays a Rerun recording is made of); not part of the run's identity
    viz_dir: Optional[str] = None
    viz_samples: int = 0
    viz_arrays: bool = False


def build_dataset(spec: EvalSpec):
    if not isinstance(spec.dataset, str):
        return spec.dataset
    from ..datasets import get_dataset

    kwargs = dict(spec.dataset_options)
    if spec.split is not None:
        kwargs["split"] = spec.split
    return get_dataset(spec.dataset, spec.root, **kwargs)


def check_method_name(name: str, kind: str) -> None:
    """Raise UnknownNameError (listing the valid names) unless ``name`` is a registered ``kind`` method."""
    from ..registry import OPTICAL_FLOW_METHODS, SCENE_FLOW_METHODS

    table = OPTICAL_FLOW_METHODS if kind == "optical" else SCENE_FLOW_METHODS
    if name not in table:
        what = "optical-flow" if kind == "optical" else "scene-flow"
        raise UnknownNameError(f"unknown {what} method {name!r}; valid choices: {', '.join(sorted(table))}")


def build_method(spec: EvalSpec, kind: str):
    if spec.method is None:
        return None
    if not isinstance(spec.method, str):
        return spec.method
    from ..registry import get_optical_flow_method, get_scene_flow_method

    check_method_name(spec.method, kind)
    factory = get_optical_flow_method if kind == "optical" else get_scene_flow_method
    return factory(spec.method, **spec.method_options)


def dataset_kind(dataset) -> str:
    kind = getattr(dataset, "kind", None)
    if kind in ("optical", "scene"):
        return kind
    if len(dataset) == 0:
        raise ShapeError("evaluate: the dataset is empty")
    return "scene" if hasattr(dataset[0], "pc1") else "optical"


class SampleList:
    """A list of :class:`~motionflow.types.FlowSample` / :class:`~motionflow.types.SceneFlowSample` as a dataset."""

    def __init__(self, samples, name: str = "samples", kind: Optional[str] = None):
        self.samples = list(samples)
        self.name = name
        self.kind = kind or ("scene" if self.samples and hasattr(self.samples[0], "pc1") else "optical")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index):
        return self.samples[index]

    @property
    def ids(self) -> list:
        return [s.id for s in self.samples]


# -- evaluating one sample -------------------------------------------------------------------------
class _Context:
    """Per-process state built once from a spec: dataset and method."""

    def __init__(self, spec: EvalSpec, dataset=None, method=None):
        self.spec = spec
        threads = spec.threads or int(os.environ.get("MOTIONFLOW_EVAL_THREADS", "0"))
        if threads and spec.method is not None:
            import torch

            torch.set_num_threads(threads)
        self.dataset = build_dataset(spec) if dataset is None else dataset
        self.method = build_method(spec, spec.protocol.kind) if method is None else method


_CONTEXTS: dict = {}


def _context(spec: EvalSpec) -> _Context:
    ctx = _CONTEXTS.get(spec.token)
    if ctx is None:
        _CONTEXTS.clear()  # one evaluation at a time per worker process
        ctx = _CONTEXTS[spec.token] = _Context(spec)
    return ctx


def _peak_cuda_mb(device: str):
    if not str(device).startswith("cuda"):
        return None
    import torch

    return torch.cuda.max_memory_allocated(torch.device(device)) / 2**20 if torch.cuda.is_available() else None


def _prediction(ctx: _Context, sample) -> tuple:
    """``(prediction, note counts, manifest of the prediction files read or written)``."""
    from . import predictions as files
    from .preparation import predict_optical, predict_scene
    from .records import manifest

    spec = ctx.spec
    optical = spec.protocol.kind == "optical"
    if spec.predictions is not None:
        pred = (files.read_optical_prediction(spec.predictions, spec.dataset_name, sample) if optical
                else files.read_scene_prediction(spec.predictions, sample))
        return pred, {}, manifest(spec.predictions, files.prediction_names(spec.dataset_name, sample))
    if optical:
        pred, counts = predict_optical(ctx.method, sample, spec.protocol, spec.device)
    else:
        pred, counts = predict_scene(ctx.method, sample, spec.preparation)
    written = {}
    if spec.write_predictions is not None:
        files.write_prediction(spec.write_predictions, spec.dataset_name, sample, pred)
        written = manifest(spec.write_predictions, files.prediction_names(spec.dataset_name, sample))
    return pred, counts, written


def evaluate_sample(spec: EvalSpec, index: int) -> dict:
    """Evaluate sample ``index``: predict (or read the prediction), score, time; returns its record."""
    from .preparation import scored_points

    ctx = _context(spec)
    start = time.perf_counter()
    sample = ctx.dataset[index]
    scored = sample.flow is not None
    if not scored and (spec.write_predictions is None or spec.predictions is not None):
        raise ShapeError(
            f"sample {sample.id!r} (index {index}): expected ground-truth flow to evaluate, found none "
            "(a test split: use a method with write_predictions to make submission files)"
        )
    t0 = time.perf_counter()
    pred, counts, manifest = _prediction(ctx, sample)
    seconds = time.perf_counter() - t0
    partial, metrics, points = {"sums": {}, "counts": {}}, {}, None
    if scored:
        points = None if spec.protocol.kind == "optical" else scored_points(spec.preparation, sample)
        try:
            partial = sample_partial(spec.protocol, sample, pred, points, counts)
        except ShapeError as exc:
            raise ShapeError(f"sample {sample.id!r} (index {index}): {exc}") from exc
        metrics = finalize_metrics(spec.protocol, Accumulator.from_partial(partial))
    if spec.viz_dir is not None and index < spec.viz_samples:
        from ..viz.samples import write_sample_view
        from .protocols import scored_mask

        mask = scored_mask(spec.protocol, sample, points) if scored and spec.protocol.kind != "optical" else None
        write_sample_view(spec.viz_dir, index, sample, pred, {k: v["value"] for k, v in metrics.items()},
                          spec.viz_arrays, valid=mask)
    return {
        "index": int(index),
        "id": sample.id,
        "metrics": {k: v["value"] for k, v in metrics.items()},
        "partial": partial,
        "files": manifest,
        "seconds": seconds,
        "wall_seconds": time.perf_counter() - start,
        "peak_rss_mb": peak_rss_mb(),
        "peak_cuda_mb": _peak_cuda_mb(spec.device),
        "pid": os.getpid(),
    }


def evaluate_indices(spec: EvalSpec, indices) -> list:
    """Records of several samples (one Ray task or pool job)."""
    return [evaluate_sample(spec, i) for i in indices]


# -- work units ------------------------------------------------------------------------------------
def scene_of(sample_id: str) -> str:
    """The scene (or log) part of a sample id: everything before the last ``/`` (the id itself if none)."""
    return sample_id.rsplit("/", 1)[0] if "/" in sample_id else sample_id


def work_units(dataset, indices: list, chunk_size=1) -> list:
    """Split sample indices into tasks: ``chunk_size`` consecutive samples, or ``"scene"``: one task per scene.

    Scenes come from the dataset's ``ids`` (no data is read): Sintel ``SCENE/frame_XXXX`` and AV2
    ``LOG/TIMESTAMP`` group by SCENE / LOG; a dataset without ``/`` in its ids gives one task per sample.
    """
    if chunk_size == "scene":
        ids = getattr(dataset, "ids", None)
        by_index = {i: ids[i] for i in indices} if ids is not None else {i: dataset[i].id for i in indices}
        units: list = []
        last = None
        for i in indices:
            scene = scene_of(by_index[i])
            if units and scene == last:
                units[-1].append(i)
            else:
                units.append([i])
            last = scene
        return units
    try:
        size = int(chunk_size)
    except (TypeError, ValueError):
        size = 0
    if size < 1:
        raise ShapeError(f"evaluate chunk_size: expected a positive integer or 'scene', found {chunk_size!r}")
    return [indices[i : i + size] for i in range(0, len(indices), size)]


# -- engines ---------------------------------------------------------------------------------------
def run_local(spec: EvalSpec, todo: list, dataset=None, method=None) -> Iterator[dict]:
    """Evaluate ``todo`` in this process, reusing the driver's dataset (and method object)."""
    _CONTEXTS.clear()
    _CONTEXTS[spec.token] = _Context(spec, dataset=dataset, method=method)
    for index in todo:
        yield evaluate_sample(spec, index)


def _pool_init(threads):  # runs in each spawned worker: share the cores between the workers
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("MKL_NUM_THREADS", str(threads))
    os.environ["MOTIONFLOW_EVAL_THREADS"] = str(threads)


def run_pool(spec: EvalSpec, units: list, workers: int) -> Iterator[dict]:
    """Evaluate the work units in ``workers`` spawned processes; yield records as units finish."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    threads = spec.threads or max(1, (os.cpu_count() or 1) // workers)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_pool_init,
                               initargs=(threads,))
    try:
        pending = {pool.submit(evaluate_indices, spec, unit) for unit in units}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                try:
                    records = fut.result()
                except BrokenProcessPool as exc:
                    raise MotionflowError(
                        f"evaluate: a worker process died ({exc}); when calling evaluate(workers > 1) from a "
                        "script, guard the call with `if __name__ == '__main__':` (spawned workers re-import it)"
                    ) from exc
                yield from records
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run_ray(spec: EvalSpec, units: list, *, address: Optional[str] = None, max_retries: int = 3,
            workers: int = 1) -> Iterator[dict]:
    """Yield the records of the work ``units`` (one Ray task each) as tasks finish."""
    ray = require("ray", "ray", hint="or install the extra: pip install 'motionflow[ray]'")
    started_here = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        else:
            ray.init(num_cpus=max(1, int(workers)), include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
        started_here = True
    try:
        task = ray.remote(max_retries=max_retries, retry_exceptions=False)(evaluate_indices)
        spec_ref = ray.put(spec)
        pending = [task.remote(spec_ref, unit) for unit in units]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    records = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    for other in pending:
                        ray.cancel(other)
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, BaseException):
                        raise cause from None  # the evaluation's own typed error (names the sample)
                    raise
                yield from records
    finally:
        if started_here:
            ray.shutdown()


__all__ = [
    "EvalSpec", "SampleList", "build_dataset", "build_method", "check_method_name", "dataset_kind",
    "evaluate_indices", "evaluate_sample", "run_local", "run_pool", "run_ray", "scene_of", "work_units",
]
