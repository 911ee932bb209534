"""The benchmark runner: :func:`evaluate` a method (or a folder of predictions) on a dataset.

Work is split into per-sample units. Each unit returns a *record*: the sample id, its metrics, its
accumulator partial (exact sums and counts, see :mod:`motionflow.eval.accumulator`), wall time and
peak memory. The driver appends each record to a JSONL file the moment it arrives, so an interrupted
run loses nothing: a rerun with the same output reads the file, skips the finished samples and
computes the rest. Dataset metrics are always computed from the merged partials of all records, so
a single process, a local process pool (``workers``) and a Ray cluster (``engine="ray"``) give
bit-identical numbers.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from ..errors import FormatError, MotionflowError, ShapeError, UnknownNameError
from .accumulator import Accumulator
from .report import Report, environment, json_safe, peak_rss_mb

RECORDS_VERSION = 1


# -- what a worker needs to rebuild everything ---------------------------------------------------
@dataclass
class EvalSpec:
    """A picklable recipe: each worker process builds its own dataset and method from it.

    ``dataset`` is a registered name (built with ``get_dataset(dataset, root, split=..., **options)``)
    or a dataset object (sent as is). ``method`` is a registered name (built with the factory and
    ``method_options``), a method object, or None when ``predictions`` is a folder.
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
    protocol: dict = field(default_factory=dict)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    threads: Optional[int] = None


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
    first = dataset[0]
    return "scene" if hasattr(first, "pc1") else "optical"


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


# -- evaluating one sample ----------------------------------------------------------------------
class _Context:
    """Per-process state built once from a spec: dataset, method, protocol."""

    def __init__(self, spec: EvalSpec, dataset=None):
        self.spec = spec
        threads = spec.threads or int(os.environ.get("MOTIONFLOW_EVAL_THREADS", "0"))
        if threads and spec.method is not None:
            import torch

            torch.set_num_threads(threads)
        self.dataset = build_dataset(spec) if dataset is None else dataset
        self.kind = spec.protocol["kind"]
        self.name = spec.protocol["dataset"]
        self.method = build_method(spec, self.kind)


_CONTEXTS: dict = {}


def _context(spec: EvalSpec) -> _Context:
    ctx = _CONTEXTS.get(spec.token)
    if ctx is None:
        _CONTEXTS.clear()  # one evaluation at a time per worker process
        ctx = _CONTEXTS[spec.token] = _Context(spec)
    return ctx


def _predict_optical(ctx: _Context, sample) -> np.ndarray:
    import torch

    frames = torch.from_numpy(np.ascontiguousarray(sample.frames)).float()[None].to(ctx.spec.device)
    with torch.no_grad():
        out = ctx.method(frames)
    flow = getattr(out, "flow", out)
    flow = flow.detach().cpu().numpy() if hasattr(flow, "detach") else np.asarray(flow)
    t, _, h, w = sample.frames.shape
    if flow.shape != (1, t - 1, 2, h, w):
        raise ShapeError(f"method output for sample {sample.id!r}: expected flow of shape (1, {t - 1}, 2, {h}, {w}), found {flow.shape}")
    pairs = sample.pair_index if sample.pair_index is not None else range(t - 1)
    return flow[0][list(pairs)]


def _predict_scene(ctx: _Context, sample) -> np.ndarray:
    out = ctx.method(sample.pc1, sample.pc2)
    flow = getattr(out, "flow", out)
    flow = flow.detach().cpu().numpy() if hasattr(flow, "detach") else np.asarray(flow)
    if flow.shape != (len(sample.pc1), 3):
        raise ShapeError(f"method output for sample {sample.id!r}: expected flow of shape ({len(sample.pc1)}, 3), found {flow.shape}")
    return flow


def _merge_partials(*parts: dict) -> dict:
    sums, counts = {}, {}
    for part in parts:
        sums.update(part["sums"])
        counts.update(part["counts"])
    return {"sums": sums, "counts": counts}


def sample_partial(protocol: dict, sample, pred) -> dict:
    """The accumulator partial of one sample under ``protocol`` (see :func:`finalize_metrics`)."""
    if protocol["kind"] == "optical":
        from .optical import optical_flow_partial

        return optical_flow_partial(pred, sample.flow, sample.valid, sample.occluded)
    from . import scene

    mask = sample.valid
    if protocol.get("av2"):
        mask = scene.av2_eval_mask(sample.pc1, sample.valid, sample.ground1)
        parts = [scene.scene_flow_partial(pred, sample.flow, mask, protocol["rel_eps"])]
        if sample.classes is not None:
            parts.append(
                scene.av2_threeway_partial(pred, sample.flow, sample.pc1, sample.classes, sample.ego_motion, sample.valid, sample.ground1)
            )
            parts.append(scene.bucketed_partial(pred, sample.flow, sample.pc1, sample.classes, sample.ego_motion, sample.valid, sample.ground1))
        else:
            parts.append({"sums": {}, "counts": {"av2:no_class_labels": 1}})
        if sample.ground1 is None:
            parts.append({"sums": {}, "counts": {"av2:no_ground_labels": 1}})
        return _merge_partials(*parts)
    return scene.scene_flow_partial(pred, sample.flow, mask, protocol["rel_eps"])


def finalize_metrics(protocol: dict, acc: Accumulator) -> dict:
    """Dataset (or per-sample) metrics from an accumulator, under ``protocol``."""
    if protocol["kind"] == "optical":
        from .optical import PROTOCOLS, optical_flow_metrics

        return optical_flow_metrics(acc, PROTOCOLS[protocol["optical"]])
    from . import scene

    metrics = scene.scene_flow_metrics(acc, protocol["rel_eps"])
    if protocol.get("av2") and "av2:bg_static:n" in acc.counts:
        metrics.update(scene.av2_threeway_metrics(acc))
        metrics.update(scene.bucketed_metrics(acc))
    return metrics


def _peak_cuda_mb(device: str):
    if not str(device).startswith("cuda"):
        return None
    import torch

    return torch.cuda.max_memory_allocated(torch.device(device)) / 2**20 if torch.cuda.is_available() else None


def evaluate_sample(spec: EvalSpec, index: int) -> dict:
    """Evaluate sample ``index``: predict (or read the prediction), score, time; returns its record."""
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
    if spec.predictions is not None:
        from .predictions import read_optical_prediction, read_scene_prediction

        if ctx.kind == "optical":
            pred = read_optical_prediction(spec.predictions, ctx.name, sample)
        else:
            pred = read_scene_prediction(spec.predictions, sample)
    else:
        pred = _predict_optical(ctx, sample) if ctx.kind == "optical" else _predict_scene(ctx, sample)
    seconds = time.perf_counter() - t0
    if spec.write_predictions is not None:
        from .predictions import write_prediction

        write_prediction(spec.write_predictions, ctx.name, sample, pred)
    partial, metrics = {"sums": {}, "counts": {}}, {}
    if scored:
        try:
            partial = sample_partial(spec.protocol, sample, pred)
        except ShapeError as exc:
            raise ShapeError(f"sample {sample.id!r} (index {index}): {exc}") from exc
        metrics = finalize_metrics(spec.protocol, Accumulator.from_partial(partial))
    return {
        "index": int(index),
        "id": sample.id,
        "metrics": {k: v["value"] for k, v in metrics.items()},
        "partial": partial,
        "seconds": seconds,
        "wall_seconds": time.perf_counter() - start,
        "peak_rss_mb": peak_rss_mb(),
        "peak_cuda_mb": _peak_cuda_mb(spec.device),
        "pid": os.getpid(),
    }


def evaluate_indices(spec: EvalSpec, indices) -> list:
    """Records of several samples (one Ray task or pool job)."""
    return [evaluate_sample(spec, i) for i in indices]


# -- engines ------------------------------------------------------------------------------------
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
        if ids is None:
            ids = [dataset[i].id for i in indices]
            by_index = dict(zip(indices, ids))
        else:
            by_index = {i: ids[i] for i in indices}
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


def _run_local(spec: EvalSpec, todo: list) -> Iterator[dict]:
    for index in todo:
        yield evaluate_sample(spec, index)


def _pool_init(threads):  # runs in each spawned worker: share the cores between the workers
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("MKL_NUM_THREADS", str(threads))
    os.environ["MOTIONFLOW_EVAL_THREADS"] = str(threads)


def _run_pool(spec: EvalSpec, units: list, workers: int) -> Iterator[dict]:
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    threads = spec.threads or max(1, (os.cpu_count() or 1) // workers)
    ctx = mp.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_pool_init, initargs=(threads,))
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


# -- records file -------------------------------------------------------------------------------
def _fingerprint(spec: EvalSpec, method_label: str) -> dict:
    return {
        "version": RECORDS_VERSION,
        "dataset": spec.protocol["dataset"],
        "split": spec.split,
        "root": spec.root,
        "dataset_options": {k: repr(v) for k, v in sorted(spec.dataset_options.items())},
        "method": method_label,
        "method_options": {k: str(v) for k, v in sorted(spec.method_options.items())},
        # a resumed sample is not predicted again, so its flow file would silently be missing if a
        # rerun asked for prediction files the first run did not write
        "write_predictions": spec.write_predictions,
        "protocol": spec.protocol,
    }


def read_records(path: Path, fingerprint: dict) -> dict:
    """Finished records by index from a JSONL records file (a torn last line is dropped)."""
    if not path.exists():
        return {}
    lines = path.read_text().split("\n")
    records = {}
    good = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            if i >= len(lines) - 2:  # a torn final write from a crash: drop it
                break
            raise FormatError(f"{path}: line {i + 1} is not valid JSON (the records file is corrupt; delete it to start over)")
        if "header" in item:
            if item["header"] != fingerprint:
                raise FormatError(
                    f"{path}: expected records of the evaluation {fingerprint}, found records of {item['header']}; "
                    "delete the file or choose another output to start a new evaluation"
                )
        else:
            records[int(item["index"])] = item
        good.append(line)
    text = "\n".join(good) + ("\n" if good else "")
    if text != path.read_text():
        from ..io import atomic_write_bytes

        atomic_write_bytes(path, text.encode())
    return records


class _RecordWriter:
    def __init__(self, path: Optional[Path], fingerprint: dict):
        self.fh = None
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not path.exists() or path.stat().st_size == 0
        self.fh = open(path, "a", encoding="utf-8")
        if fresh:
            self._write({"header": fingerprint})

    def _write(self, item: dict) -> None:
        self.fh.write(json.dumps(json_safe(item), allow_nan=False) + "\n")  # strict JSON: NaN -> null
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def write(self, record: dict) -> None:
        if self.fh is not None:
            self._write(record)

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()


def _check_resumed_ids(dataset, done: dict, path) -> None:
    """Raise FormatError when a resumed record's id is not the dataset's sample at that index.

    Records are keyed by index; a dataset whose listing changed since the interrupted run (a scene
    added, files removed) would otherwise have other samples' results merged in under shifted indices.
    """
    ids = getattr(dataset, "ids", None)
    if ids is None or not done:
        return
    for i in sorted(done):
        if done[i]["id"] != ids[i]:
            raise FormatError(
                f"{path}: record {i} is sample {done[i]['id']!r} but the dataset's sample {i} is now {ids[i]!r} "
                "(the dataset changed since that run); delete the file or pass resume=False (--no-resume)"
            )


def _records_path(out, records) -> Optional[Path]:
    if records is not None:
        return Path(records)
    if out is not None:
        out = Path(out)
        return out.with_name(out.stem + ".samples.jsonl")
    return None


# -- protocol and summary ------------------------------------------------------------------------
def make_protocol(kind: str, name: str, protocol: Optional[str] = None, rel_eps: Optional[float] = None) -> dict:
    """The metric protocol of an evaluation: which reductions, eps and extra protocols apply.

    Optical: ``{"kind": "optical", "dataset", "optical": PROTOCOLS key}`` (from the dataset name unless
    ``protocol`` names one). Scene: ``{"kind": "scene", "dataset", "av2": bool, "rel_eps"}``.
    """
    from .optical import PROTOCOLS
    from .scene import NSFP_REL_EPS

    if kind == "optical":
        if protocol is not None and protocol not in PROTOCOLS:
            raise UnknownNameError(f"evaluate: unknown optical protocol {protocol!r}; valid choices: {', '.join(sorted(PROTOCOLS))}")
        return {"kind": "optical", "dataset": name, "optical": protocol or (name if name in PROTOCOLS else "default")}
    if protocol not in (None, "av2", "default"):
        raise UnknownNameError(f"evaluate: unknown scene-flow protocol {protocol!r}; valid choices: av2, default")
    return {
        "kind": "scene",
        "dataset": name,
        "av2": protocol == "av2" or (protocol is None and name == "av2"),
        "rel_eps": NSFP_REL_EPS if rel_eps is None else float(rel_eps),
    }


def describe_protocol(protocol: dict, acc: Accumulator) -> dict:
    """The report's ``protocol`` entry: the protocol plus its default reductions and any caveats."""
    info = dict(protocol)
    if protocol["kind"] == "optical":
        from .optical import BASE_METRICS, PROTOCOLS

        from .optical import occlusion_coverage

        info["default_reductions"] = {b: PROTOCOLS[protocol["optical"]].reduction(b) for b in BASE_METRICS}
        if occlusion_coverage(acc) == "partial":
            info["notes"] = ["occlusion masks exist for only some scored pairs: no dataset-level _noc / _occ "
                             "(matched / unmatched) metrics; the per-sample entries of the pairs with masks have them"]
        return info
    info["default_reduction"] = "sample"
    notes = []
    if acc.n("av2:no_ground_labels"):
        notes.append(f"{acc.n('av2:no_ground_labels')} samples had no ground labels: their ground points were scored "
                     "(the official AV2 eval masks exclude ground)")
    if acc.n("av2:no_class_labels"):
        notes.append(f"{acc.n('av2:no_class_labels')} samples had no class labels: no EPE 3-way / bucketed EPE for them")
    if notes:
        info["notes"] = notes
    return info


def _runtime(ordered: list, computed: int, resumed: int, wall: float, engine: str, workers: int) -> dict:
    cuda = [r["peak_cuda_mb"] for r in ordered if r.get("peak_cuda_mb") is not None]
    return {
        "seconds_per_sample": float(np.mean([r["seconds"] for r in ordered])) if ordered else None,
        "wall_seconds_per_sample": float(np.mean([r["wall_seconds"] for r in ordered])) if ordered else None,
        "total_seconds_this_run": wall,
        "samples_this_run": computed,
        "samples_resumed": resumed,
        "peak_rss_mb": max((r.get("peak_rss_mb") or 0.0 for r in ordered), default=peak_rss_mb()),
        "peak_cuda_mb": max(cuda) if cuda else None,
        "engine": engine,
        "workers": int(workers),
    }


# -- public entry point -------------------------------------------------------------------------
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
) -> Report:
    """Evaluate ``method`` (or the flows in ``predictions_dir``) on ``dataset``; returns a :class:`Report`.

    Args:
        dataset: a registered dataset name (``"sintel"``, ``"kitti2015"``, ``"av2"``, ...; built with
            ``root``, ``split`` and ``dataset_options``), a dataset object (``len``, indexing, ``name``,
            ``kind``) or a list of samples.
        method: a registered method name (built in every worker with ``method_options``), a method
            object, or None when ``predictions_dir`` is given.
        predictions_dir: a folder of flows computed elsewhere, in the dataset's own naming
            (:mod:`motionflow.eval.predictions`).
        out: report path (``.json``; ``.csv`` and ``.md`` are written beside it). The per-sample records
            go to ``<out stem>.samples.jsonl`` (or ``records``) as they finish; with ``resume`` a rerun
            skips the samples found there.
        max_samples: evaluate only the first N samples.
        workers: local process pool size (spawned processes, each builds its own dataset and method).
        engine: ``"local"`` (in-process or pool) or ``"ray"`` (one task per work unit on
            ``ray.init(address=address)``; local Ray with ``workers`` CPUs when no address; Ray retries a
            task whose worker died up to ``max_retries`` times).
        chunk_size: samples per work unit (pool job or Ray task), or ``"scene"`` for one unit per scene
            / log (:func:`work_units`).
        device: torch device for optical-flow methods.
        write_predictions: also save the method's flows in the dataset's naming under this folder.
        protocol: ``"av2"`` forces the Argoverse 2 protocol metrics (default: on for the ``av2``
            dataset); an optical protocol name (``sintel``, ``kitti2015``, ``default``) picks the
            default reductions (default: from the dataset name).
        rel_eps: scene flow ``rel = epe / (||gt|| + rel_eps)`` (default 1e-20, NSFP; SCOOP uses 1e-4).
    """
    if (method is None) == (predictions_dir is None):
        raise UnknownNameError("evaluate: expected exactly one of method or predictions_dir, found "
                               + ("both" if method is not None else "neither"))
    if engine not in ("local", "ray"):
        raise UnknownNameError(f"evaluate: unknown engine {engine!r}; valid choices: local, ray")
    if int(workers) < 1:
        raise ShapeError(f"evaluate: expected workers >= 1, found {workers}")
    if predictions_dir is not None and not Path(predictions_dir).is_dir():
        from ..errors import DatasetNotFoundError

        raise DatasetNotFoundError(f"evaluate: predictions folder {predictions_dir} does not exist")
    if isinstance(dataset, (list, tuple)):
        dataset = SampleList(dataset)

    spec = EvalSpec(
        dataset=dataset,
        root=None if root is None else str(root),
        split=split,
        dataset_options=dict(dataset_options or {}),
        method=method,
        method_options=dict(method_options or {}),
        predictions=None if predictions_dir is None else str(predictions_dir),
        write_predictions=None if write_predictions is None else str(write_predictions),
        device=str(device),
    )
    ds = build_dataset(spec)  # also validates the name and root in the driver
    kind = dataset_kind(ds)
    name = getattr(ds, "name", dataset if isinstance(dataset, str) else type(ds).__name__)
    if isinstance(method, str):
        check_method_name(method, kind)
    spec.protocol = make_protocol(kind, name, protocol, rel_eps)
    if not isinstance(dataset, str):
        spec.dataset = ds  # sent to workers as is (a name is rebuilt by each worker)

    method_label = (
        method if isinstance(method, str) else
        f"predictions:{predictions_dir}" if method is None else
        getattr(method, "name", type(method).__name__)
    )
    n = len(ds)
    if max_samples is not None:
        n = min(n, int(max_samples))
    indices = list(range(n))
    fingerprint = _fingerprint(spec, method_label)
    rec_path = _records_path(out, records)
    done = read_records(rec_path, fingerprint) if (rec_path is not None and resume) else {}
    if rec_path is not None and not resume and rec_path.exists():
        rec_path.unlink()
    done = {i: r for i, r in done.items() if i < n}
    _check_resumed_ids(ds, done, rec_path)
    todo = [i for i in indices if i not in done]

    from tqdm.auto import tqdm

    new: dict = {}
    writer = _RecordWriter(rec_path, fingerprint)
    bar = tqdm(total=len(indices), initial=len(indices) - len(todo), desc=f"eval {name}", unit="sample", disable=not progress)
    wall = time.perf_counter()
    try:
        if not todo:
            stream = iter(())
        elif engine == "ray":
            from .distributed import run_ray

            units = work_units(ds, todo, chunk_size)
            stream = run_ray(spec, units, address=address, max_retries=max_retries, workers=workers)
        elif int(workers) > 1:
            stream = _run_pool(spec, work_units(ds, todo, chunk_size), int(workers))
        else:
            _CONTEXTS.clear()
            _CONTEXTS[spec.token] = _Context(spec, dataset=ds)  # reuse the driver's dataset
            stream = _run_local(spec, todo)
        for record in stream:
            new[record["index"]] = record
            writer.write(record)
            bar.update(1)
    finally:
        bar.close()
        writer.close()
    wall = time.perf_counter() - wall

    all_records = {**done, **new}
    ordered = [all_records[i] for i in indices]
    acc = Accumulator.merged(Accumulator.from_partial(r["partial"]) for r in ordered)
    metrics = finalize_metrics(spec.protocol, acc)
    runtime = _runtime(ordered, len(new), len(indices) - len(todo), wall, engine, workers)
    per_sample = [
        {"id": r["id"], "index": r["index"], "metrics": r["metrics"], "seconds": r["seconds"]} for r in ordered
    ]
    protocol_info = describe_protocol(spec.protocol, acc)
    if spec.dataset_options:  # e.g. Sintel's pass: part of what the numbers mean
        protocol_info["dataset_options"] = {k: v if isinstance(v, (str, int, float, bool)) else repr(v)
                                            for k, v in sorted(spec.dataset_options.items())}
    report = Report(
        dataset=name,
        split=split if split is not None else getattr(ds, "split", None),  # the loader's default split
        method=method_label,
        metrics=metrics,
        per_sample=per_sample,
        runtime=runtime,
        environment=environment(device),
        protocol=protocol_info,
    )
    if out is not None:
        report.write(out)
    return report


__all__ = [
    "EvalSpec", "SampleList", "describe_protocol", "evaluate", "evaluate_sample", "finalize_metrics",
    "make_protocol", "sample_partial", "work_units",
]
