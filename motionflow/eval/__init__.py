"""Benchmark evaluation: metrics that match the official devkits, a resumable runner, reports.

* :func:`evaluate` -- run a method (or score a folder of predictions) on a dataset -> :class:`Report`.
* :mod:`motionflow.eval.optical` -- EPE, px1/3/5, Fl-all; occ/noc, Sintel matched/unmatched and
  speed splits; ``pixel`` and ``image`` reductions.
* :mod:`motionflow.eval.scene` -- EPE3D, Acc3D strict/relax, outliers, angle error; Argoverse 2
  EPE 3-way and bucketed normalized EPE.
* :mod:`motionflow.eval.protocols` -- the published evaluation protocols as named objects.
* :mod:`motionflow.eval.preparation` -- a method's input under a protocol (windows, scene preparation).
* :mod:`motionflow.eval.records` -- run fingerprint, records file, resume checks, lock.
* :mod:`motionflow.eval.engines` -- local, process-pool and Ray engines.
* :mod:`motionflow.eval.accumulator` -- exact, mergeable sums and counts.
* :mod:`motionflow.eval.predictions` -- prediction files in each dataset's naming.

Imports are lazy: ``import motionflow.eval`` loads no torch, Ray or tqdm.
"""

from __future__ import annotations

from motionflow.lazy import lazy_exports

_LAZY = {
    "evaluate": "motionflow.eval.runner",
    "EvalSpec": "motionflow.eval.engines",
    "SampleList": "motionflow.eval.engines",
    "PROTOCOLS": "motionflow.eval.protocols",
    "Protocol": "motionflow.eval.protocols",
    "list_protocols": "motionflow.eval.protocols",
    "Report": "motionflow.eval.report",
    "Accumulator": "motionflow.eval.accumulator",
    "optical_flow_partial": "motionflow.eval.optical",
    "optical_flow_metrics": "motionflow.eval.optical",
    "endpoint_error": "motionflow.eval.optical",
    "scene_flow_partial": "motionflow.eval.scene",
    "scene_flow_metrics": "motionflow.eval.scene",
    "scene_flow_metrics_per_sample": "motionflow.eval.scene",
    "prediction_names": "motionflow.eval.predictions",
    "write_prediction": "motionflow.eval.predictions",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_exports(__name__, _LAZY)
