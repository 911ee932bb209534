"""Ray engine: one task per work unit (a sample, ``chunk_size`` consecutive samples, or a scene).

``ray.init(address=...)`` joins a cluster (``"auto"`` or ``"ray://host:10001"``); without an address a
local Ray instance starts with ``num_cpus=workers``. Every task rebuilds the dataset and the method
from the picklable :class:`~motionflow.eval.runner.EvalSpec` (cached per Ray worker process, so a
worker that runs many tasks builds them once), evaluates its samples and returns their records. A
task that dies with its worker is retried up to ``max_retries`` times by Ray; an exception raised by
the evaluation itself (a missing prediction, a bad shape) is not retried and stops the run with that
message. Records stream back as tasks finish; the driver writes them to the JSONL file and merges
their exact accumulators, so the numbers equal those of a single process.

Ray is optional (``pip install motionflow[ray]``) and imported only here, lazily.
"""

from __future__ import annotations

from typing import Iterator, Optional

from ..errors import require


def _remote_fn(ray, max_retries: int):
    from .runner import evaluate_indices

    return ray.remote(max_retries=max_retries, retry_exceptions=False)(evaluate_indices)


def run_ray(spec, units: list, *, address: Optional[str] = None, max_retries: int = 3, workers: int = 1) -> Iterator[dict]:
    """Yield the records of the work ``units`` (lists of sample indices, one Ray task each) as tasks finish."""
    ray = require("ray", "ray", hint="or install the extra: pip install 'motionflow[ray]'")

    started_here = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        else:
            ray.init(num_cpus=max(1, int(workers)), include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
        started_here = True
    try:
        task = _remote_fn(ray, max_retries)
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
