"""Export a flow network to ONNX: one forward of the network's window, numerically equal to torch.

What is exported (the *window model*, :class:`WindowModel`): the network as its registered method runs
it on one window (:class:`~motionflow.models.method.NetworkSpec`), with ``iters`` refinement iterations
unrolled, at a padded frame size.

==================  ======  ====================================  ===================================
model               T       ``flow`` ``(B, F, 2, H, W)``          ``backward`` ``(B, G, 2, H, W)``
==================  ======  ====================================  ===================================
``raft``            2       pair 0 (frame 0 -> 1)                 --
``videoflow-bof``   3       pair 1 (centre -> next)               pair 0 (centre -> previous)
``videoflow-mof``   5       pairs 1, 2, 3 (inner frames -> next)  pairs 0, 1, 2 (inner frames -> previous)
``streamflow``      4       pairs 0, 1, 2                         --
==================  ======  ====================================  ===================================

* input ``frames`` ``(B, T, 3, H, W)`` float32, RGB in [0, 255] (the networks normalise inside);
* output ``flow``: the final full-resolution (convex-upsampled) forward flows of the window pairs listed
  above, pair ``p`` = window frame ``p`` -> ``p + 1``; ``backward`` (VideoFlow only): frame ``p + 1`` ->
  ``p``. For RAFT and StreamFlow ``F = T - 1``. VideoFlow estimates flows for its inner frames only, so
  its window gives ``T - 2`` forward and ``T - 2`` backward flows, not ``T - 1`` of each (the video
  engine takes the missing ones from the neighbouring windows, as with torch).
* ONNX metadata (``custom_metadata_map`` in ONNX Runtime): ``motionflow.model``, ``motionflow.window``,
  ``motionflow.forward_pairs`` / ``motionflow.backward_pairs`` (comma-separated window pairs of the slots
  of ``flow`` / ``backward``), ``motionflow.iters``, ``motionflow.height`` / ``motionflow.width`` (the size
  traced), ``motionflow.dynamic`` (the dynamic axes), ``motionflow.version``.
  :class:`motionflow.models.onnx_runtime.OnnxFlowMethod` reads them, so the file is all it needs.

Dynamic axes: the batch axis ``B`` is dynamic. ``dynamic_size=True`` also makes ``H`` and ``W`` dynamic
(any multiple of 8 from 128 px up, checked by the exporter's symbolic shapes); by default they are fixed
to the traced size (a fixed size lets ONNX Runtime fold the shape arithmetic). ``T`` and the number of
iterations are always fixed.

Export path (what differs from the torch forward, :func:`official_arithmetic`): the memory-bounded
correlation (:class:`~motionflow.ops.correlation.OnDemandCorrPyramid`: data-dependent row chunks and
gathers) does not trace, so the exported graph always builds the all-pairs pyramid
(:class:`~motionflow.ops.correlation.CorrPyramid`, the same lookup values within float rounding), which
holds ``(H/8 * W/8)^2`` floats per pair (1080p: 4.3 GB per pair); likewise the memory-bounded attention
and MLP paths of :mod:`~motionflow.models.blocks.memory` (fused SDPA, row chunks) are switched off: the
graph computes the official full tensors (in ONNX a fused attention would be spelled out as the same
matrix anyway). At the parity sizes the torch method takes these paths too. Every other op exports as it
is (``grid_sample`` -> ``GridSample``, opset >= 16).

Exporter: ``torch.onnx.export(..., dynamo=True)`` (``torch.export`` + onnxscript), the default of
torch >= 2.9. The legacy TorchScript exporter (``dynamo=False``, deprecated) is 9-15x faster to export
(RAFT 4.4 vs 41 s, BOF 9.9 vs 150 s at 136x168 with 4 iterations) and its RAFT file is as exact, but it
bakes Python shape arithmetic into constants: its VideoFlow BOF file (dynamic batch) fails inside ONNX
Runtime at batch 1 and 2 alike (a Twins attention reshape asks for 1428 tokens of a 28 x 42 map),
whereas ``torch.export`` checks every dynamic dimension symbolically and refuses what it cannot keep
dynamic. About half of the dynamo export time is onnxscript's graph optimiser (pattern rewrites); the
rest is ``torch.export`` and its decompositions (README, section "ONNX export and ONNX Runtime").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from ..errors import ShapeError, UnknownNameError, require
from . import NETWORKS
from .method import MIN_SIZE, padding_for

__all__ = ["DEFAULT_OPSET", "ExportReport", "WindowModel", "example_frames", "export_onnx", "export_size",
           "official_arithmetic", "verify_export", "window_length"]

#: Opset of the torch.export-based exporter's op library (other opsets go through the ONNX version converter).
DEFAULT_OPSET = 18
#: Lowest opset with ``GridSample`` (bilinear lookups of the correlation pyramid).
MIN_OPSET = 16
#: Metadata key prefix in the ONNX file.
META = "motionflow."


def window_length(spec) -> int:
    """Frames of one forward pass of ``spec``'s network (RAFT 2, BOF 3, MOF 5, StreamFlow 4)."""
    return spec.windows(spec.clip_length)[0][1]


def export_size(height: int, width: int, spec=None) -> tuple[int, int]:
    """The padded size the method runs frames of ``height x width`` at (multiple of 8, >= 128 px)."""
    stride = spec.stride if spec is not None else 8
    min_size = spec.min_size if spec is not None else MIN_SIZE
    left, right, top, bottom = padding_for(int(height), int(width), stride, min_size)
    return int(height) + top + bottom, int(width) + left + right


def official_arithmetic(network: nn.Module) -> nn.Module:
    """Switch ``network`` to the paths that export: the all-pairs correlation pyramid
    (``corr_on_demand = False``) and the full-tensor attention / MLP layers
    (:func:`~motionflow.models.blocks.memory.set_max_bytes` ``None``), the official arithmetic."""
    from .blocks.memory import set_max_bytes

    if hasattr(network, "corr_on_demand"):
        network.corr_on_demand = False
    return set_max_bytes(network, None)


class WindowModel(nn.Module):
    """The exported function: ``frames (B, T, 3, H, W) -> flow (B, F, 2, H, W)[, backward (B, G, 2, H, W)]``.

    Runs ``spec.run_window`` (the method's own window hook) and stacks the window's flows in pair order.

    Args:
        spec: the network's :class:`~motionflow.models.method.NetworkSpec`.
        network: the network (weights loaded, eval mode).
        iters: refinement iterations (unrolled in the export).

    Attributes:
        window: frames per forward (T).
        forward_pairs, backward_pairs: the window pairs of the slots of ``flow`` / ``backward`` (read from
            one probe forward at 128 x 128 px with one iteration: the layout depends on neither).
    """

    def __init__(self, spec, network: nn.Module, iters: int):
        super().__init__()
        self.spec = spec
        self.network = network
        self.iters = int(iters)
        self.window = window_length(spec)
        size = max(spec.min_size, spec.stride)
        with torch.no_grad():
            probe = spec.run_window(network, torch.zeros(1, self.window, 3, size, size), 1, False)
        self.forward_pairs = sorted(probe.forward)
        self.backward_pairs = sorted(probe.backward)

    def forward(self, frames: torch.Tensor):
        res = self.spec.run_window(self.network, frames, self.iters, False)
        flow = torch.stack([res.forward[p] for p in self.forward_pairs], dim=1)
        if not self.backward_pairs:
            return flow
        return flow, torch.stack([res.backward[p] for p in self.backward_pairs], dim=1)


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote.

    Attributes:
        path: the ``.onnx`` file.
        model: network name; window: frames per forward (T); iters: refinement iterations.
        size: ``(H, W)`` traced (padded); dynamic: the dynamic axes (``{"frames": {0: "batch", ...}}``).
        outputs: output names (``flow`` and, for VideoFlow, ``backward``).
        forward_pairs, backward_pairs: window pairs of the output slots.
        opset: ONNX opset; seconds: export wall time.
        max_abs_diff: max |ONNX Runtime - torch| in px on the verification frames (None: not verified).
    """

    path: Path
    model: str
    window: int
    iters: int
    size: tuple
    dynamic: dict
    outputs: list
    forward_pairs: list
    backward_pairs: list
    opset: int
    seconds: float
    max_abs_diff: Optional[float] = None
    metadata: dict = field(default_factory=dict)


def example_frames(batch: int, window: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """``(B, T, 3, H, W)`` in [0, 255]: a smooth random texture shifted by (3, 2) px per frame.

    Traced by the exporter and used to verify ONNX Runtime against torch (any input would do; a
    smooth moving texture keeps the flows in the range of real ones).
    """
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(batch, 3, height // 16 + 4, width // 16 + 4, generator=g)
    tex = torch.nn.functional.interpolate(base, size=(height + 2 * window * 3, width + 2 * window * 3), mode="bicubic")
    tex = 255 * (tex - tex.amin()) / (tex.amax() - tex.amin())
    m = window * 3
    frames = [tex[:, :, m - 2 * t : m - 2 * t + height, m - 3 * t : m - 3 * t + width] for t in range(window)]
    return torch.stack(frames, dim=1).contiguous()


def _check_args(model: str, size, opset: int) -> tuple[int, int]:
    if model not in NETWORKS:
        raise UnknownNameError(f"model: unknown network {model!r}; valid choices: {', '.join(sorted(NETWORKS))}")
    try:
        height, width = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ShapeError(f"size: expected (height, width) in pixels, found {size!r}") from None
    if height < 1 or width < 1:
        raise ShapeError(f"size: expected a positive height and width, found {height}x{width}")
    if int(opset) < MIN_OPSET:
        raise ShapeError(f"opset: expected >= {MIN_OPSET} (GridSample), found {opset}")
    return height, width


def _dynamic_shapes(dynamic_batch: bool, dynamic_size: bool, spec):
    dims = {}
    if dynamic_batch:
        dims[0] = torch.export.Dim("batch", min=1, max=1024)
    if dynamic_size:
        lo = max(spec.min_size, spec.stride) // spec.stride
        dims[3] = spec.stride * torch.export.Dim("height_div8", min=lo, max=1024)
        dims[4] = spec.stride * torch.export.Dim("width_div8", min=lo, max=1024)
    names = {0: "batch", 3: "height", 4: "width"}
    return {"frames": dims} if dims else None, {"frames": {k: names[k] for k in dims}}


def export_onnx(
    model: str,
    checkpoint: Union[str, Path, dict, None],
    size: tuple,
    out: Union[str, Path],
    iters: Optional[int] = None,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    dynamic_size: bool = False,
    verify: bool = True,
    weights: Optional[str] = None,
    allow_pickle: bool = False,
) -> ExportReport:
    """Export network ``model`` with its checkpoint to ``out`` (see the module docstring for the layout).

    Args:
        model: ``raft``, ``videoflow-bof``, ``videoflow-mof`` or ``streamflow``.
        checkpoint: official checkpoint file or state dict (required unless ``weights="random"``).
        size: ``(H, W)`` of the frames; the export is traced at the padded size the method runs them at
            (:func:`export_size`: a multiple of 8 and >= 128 px per side).
        out: the ``.onnx`` file to write (weights embedded, one file).
        iters: refinement iterations (default: the method's, RAFT / VideoFlow 32, StreamFlow 15).
        opset: ONNX opset (default 18, the exporter's own; >= 16).
        dynamic_batch, dynamic_size: make ``B`` / ``H`` and ``W`` dynamic.
        verify: run ONNX Runtime on :func:`example_frames` and record max |ORT - torch| in the report.
        weights: ``"random"`` to export the random initialisation (tests, benchmarks).
        allow_pickle: see :func:`motionflow.models.load_checkpoint`.

    Raises:
        UnknownNameError, ShapeError: bad ``model``, ``size`` or ``opset``.
        CheckpointError: missing or mismatching checkpoint.
        MissingDependencyError: ``onnxscript`` / ``onnx`` (or ``onnxruntime`` for ``verify``) missing
            (``pip install motionflow[onnx]``).
    """
    height, width = _check_args(model, size, opset)
    _require_exporter(verify)
    from ..registry import get_optical_flow_method

    method = get_optical_flow_method(
        model, checkpoint=checkpoint, weights=weights, iters=iters, device="cpu", allow_pickle=allow_pickle
    )
    spec = method.spec
    h, w = export_size(height, width, spec)
    official_arithmetic(method.model)
    wrapper = WindowModel(spec, method.model, method.iters).eval()
    window = wrapper.window
    frames = example_frames(2 if dynamic_batch else 1, window, h, w)  # batch 1 would be specialised to 1
    shapes, dynamic = _dynamic_shapes(dynamic_batch, dynamic_size, spec)
    out = Path(out)
    t0 = time.perf_counter()
    program = _export(wrapper, frames, shapes, opset, model)
    outputs = ["flow"] + (["backward"] if wrapper.backward_pairs else [])
    meta = {
        "model": model,
        "window": str(window),
        "forward_pairs": ",".join(map(str, wrapper.forward_pairs)),
        "backward_pairs": ",".join(map(str, wrapper.backward_pairs)),
        "iters": str(method.iters),
        "height": str(h),
        "width": str(w),
        "dynamic": ",".join(dynamic["frames"].values()),
        "version": _version(),
    }
    _save(program, out, outputs, dynamic, meta)
    report = ExportReport(
        path=out,
        model=model,
        window=window,
        iters=method.iters,
        size=(h, w),
        dynamic=dynamic,
        outputs=outputs,
        forward_pairs=list(wrapper.forward_pairs),
        backward_pairs=list(wrapper.backward_pairs),
        opset=int(opset),
        seconds=time.perf_counter() - t0,
        metadata={META + k: v for k, v in meta.items()},
    )
    if verify:
        report.max_abs_diff = verify_export(out, wrapper, frames)
    return report


def _require_exporter(verify: bool) -> None:
    for module, pip_name in (("onnx", "onnx"), ("onnxscript", "onnxscript")) + (
        (("onnxruntime", "onnxruntime"),) if verify else ()
    ):
        require(module, pip_name, hint="or install the extra: pip install 'motionflow[onnx]'")


def _version() -> str:
    from .. import __version__

    return str(__version__)


def _export(wrapper: WindowModel, frames: torch.Tensor, shapes, opset: int, name: str):
    """``torch.export.export`` of ``wrapper`` on ``frames`` (dynamic dims checked symbolically), then
    ``torch.onnx.export(..., dynamo=True)`` of that program -> the optimised ``ONNXProgram``.

    Exporting the ``ExportedProgram`` (rather than the module) keeps ``torch.onnx`` from retrying other
    capture strategies that would silently drop a dynamic dimension it could not keep.
    """
    import logging
    import warnings

    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)  # else one warning per torchvision op it skips
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", FutureWarning)
            try:
                program = torch.export.export(wrapper, (frames,), dynamic_shapes=shapes, strict=False)
            except Exception as exc:  # torch.export raises UserError / ConstraintViolationError / ...
                first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
                raise ShapeError(f"export of {name}: torch.export could not trace the network ({first.strip()})") from exc
            return torch.onnx.export(program, (frames,), dynamo=True, opset_version=int(opset),
                                     input_names=["frames"], optimize=True, verbose=False)
    finally:
        logger.setLevel(level)


def _save(program, out: Path, outputs: list, dynamic: dict, meta: dict) -> None:
    """Name the outputs, write the metadata and save one self-contained file (atomic rename)."""
    graph = program.model.graph
    if len(graph.outputs) != len(outputs):
        raise ShapeError(f"export: expected {len(outputs)} graph outputs {outputs}, found {len(graph.outputs)}")
    for value, name in zip(graph.outputs, outputs):
        value.name = name
    for key, value in meta.items():
        program.model.metadata_props[META + key] = value
    from ..io.atomic import atomic_path

    with atomic_path(out) as tmp:
        program.save(str(tmp), external_data=False)


def verify_export(path: Union[str, Path], wrapper: WindowModel, frames: torch.Tensor) -> float:
    """Max |ONNX Runtime - torch| (px) over every output of ``path`` on ``frames``."""
    from .onnx_runtime import open_session

    session = open_session(path, device="cpu")
    got = session.run(None, {"frames": frames.numpy()})
    with torch.no_grad():
        want = wrapper(frames)
    want = want if isinstance(want, tuple) else (want,)
    return max(float((torch.from_numpy(g) - w).abs().max()) for g, w in zip(got, want))
