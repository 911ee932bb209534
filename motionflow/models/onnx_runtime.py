"""ONNX Runtime backend: an exported window model (:mod:`motionflow.models.export`) as an optical-flow method.

:class:`OnnxFlowMethod` is a :class:`~motionflow.models.method.NetworkFlowMethod` whose window hook runs
an ONNX Runtime session instead of the torch network. Everything else is the torch method's own code:
padding to the stride and the 128 px minimum, the network's window plan inside a clip, keeping each
pair's flow from the first window that produces it, cropping; the video engine (clips, stitching,
resume) sees the same interface and needs no branch. Select it with ``backend="onnxruntime"`` and
``onnx=PATH`` in any network factory (``estimate_flow(frames, "raft", backend="onnxruntime",
onnx="raft.onnx")``) or ``motionflow estimate --backend onnxruntime --onnx MODEL.onnx``.

Sizes: a file exported with a fixed size runs frames whose padded size (:func:`~motionflow.models.method.padding_for`)
is that size, exactly as torch does; smaller frames are replicate-padded up to it (the network then sees
more border than the torch method would give it, which changes the flows slightly), larger ones are
refused with the ``motionflow export`` command that fits them. A file with dynamic height and width
runs any size at the torch method's padding. A file with a fixed batch of 1 runs batches sample by sample.

Deviations from the torch method: ``return_iterations`` is not available (the export returns the final
flows only), the number of iterations is the exported one, and the memory-bounded correlation is never
used (the exported graph holds the all-pairs pyramid).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from ..errors import CheckpointError, FormatError, MissingDependencyError, ShapeError, UnknownNameError, require
from .export import window_length
from .method import NetworkFlowMethod, NetworkSpec, WindowFlows, padding_for

__all__ = ["OnnxModelInfo", "OnnxFlowMethod", "create_onnx_method", "open_session", "read_info"]

_PREFIX = "motionflow."


def _onnxruntime():
    return require("onnxruntime", "onnxruntime", hint="or install the extra: pip install 'motionflow[onnx]'")


def _providers(device) -> list:
    """ONNX Runtime execution providers for a torch-style ``device`` (None: CUDA when ORT has it)."""
    ort = _onnxruntime()
    available = ort.get_available_providers()
    kind = "cuda" if device is None and "CUDAExecutionProvider" in available else str(device or "cpu")
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    if kind.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise MissingDependencyError(
                f"device {kind!r}: this onnxruntime has no CUDAExecutionProvider (providers: {', '.join(available)}); "
                "install the GPU build: pip install onnxruntime-gpu"
            )
        index = int(kind.split(":")[1]) if ":" in kind else 0
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    raise UnknownNameError(f"device: expected cpu, cuda or cuda:N for the onnxruntime backend, found {kind!r}")


def open_session(path: Union[str, Path], device=None, threads: Optional[int] = None, optimize: bool = True):
    """An ``onnxruntime.InferenceSession`` on ``path`` (``threads``: intra-op threads, default torch's;
    ``optimize=False``: no graph optimisation, for reading the metadata only)."""
    ort = _onnxruntime()
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"onnx file {str(path)!r} does not exist (expected a file written by motionflow export)")
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads) if threads else torch.get_num_threads()
    options.log_severity_level = 3
    # no pre-planned block for all intermediates: peak memory 0.56-0.70x of the default at 216x512
    # (RAFT 121 vs 173 MB, BOF 364 vs 591, MOF 722 vs 1295), same speed within the noise of this machine
    options.enable_mem_pattern = False
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(str(path), options, providers=_providers(device))
    except Exception as exc:  # onnxruntime raises its own exception types (InvalidProtobuf, Fail...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FormatError(f"{path}: expected an ONNX model, onnxruntime could not load it ({first})") from exc


@dataclass
class OnnxModelInfo:
    """The ``motionflow.*`` metadata of an exported file (see :mod:`motionflow.models.export`).

    Attributes:
        path: the file; model: network name; window: frames per forward; iters: iterations;
        forward_pairs, backward_pairs: window pairs of the ``flow`` / ``backward`` slots;
        size: ``(H, W)`` traced; dynamic: dynamic axes (``batch``, ``height``, ``width``).
    """

    path: Path
    model: str
    window: int
    iters: int
    forward_pairs: tuple
    backward_pairs: tuple
    size: tuple
    dynamic: tuple


def _pairs(text: str) -> tuple:
    return tuple(int(p) for p in text.split(",") if p != "")


def read_info(session, path: Union[str, Path]) -> OnnxModelInfo:
    """Parse the ``motionflow.*`` metadata of an open session of ``path``.

    Raises:
        FormatError: the file is not a motionflow export (metadata missing or malformed).
    """
    meta = session.get_modelmeta().custom_metadata_map
    need = ("model", "window", "iters", "forward_pairs", "backward_pairs", "height", "width", "dynamic")
    missing = [_PREFIX + k for k in need if _PREFIX + k not in meta]
    if missing:
        raise FormatError(
            f"{path}: expected an ONNX file written by motionflow export (metadata {', '.join(missing)} missing)"
        )
    try:
        return OnnxModelInfo(
            path=Path(path),
            model=meta[_PREFIX + "model"],
            window=int(meta[_PREFIX + "window"]),
            iters=int(meta[_PREFIX + "iters"]),
            forward_pairs=_pairs(meta[_PREFIX + "forward_pairs"]),
            backward_pairs=_pairs(meta[_PREFIX + "backward_pairs"]),
            size=(int(meta[_PREFIX + "height"]), int(meta[_PREFIX + "width"])),
            dynamic=tuple(d for d in meta[_PREFIX + "dynamic"].split(",") if d),
        )
    except ValueError as exc:
        raise FormatError(f"{path}: malformed motionflow metadata ({exc})") from exc


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


class OnnxFlowMethod(NetworkFlowMethod):
    """A network method whose windows run in ONNX Runtime (see the module docstring).

    Args:
        spec: the network's :class:`~motionflow.models.method.NetworkSpec` (the file must be an export of it).
        onnx: path of the file written by :func:`motionflow.models.export_onnx` / ``motionflow export``.
        iters: None, or the exported number of iterations (anything else is refused).
        device: ``cpu``, ``cuda``, ``cuda:N`` or None (CUDA when onnxruntime has it, else CPU).
        threads: intra-op threads of the session (default ``torch.get_num_threads()``).

    Raises:
        CheckpointError: missing file, an export of another network or window length, or other iterations.
        FormatError: not an ONNX file / not a motionflow export.
        MissingDependencyError: onnxruntime (or its CUDA provider) missing.
    """

    def __init__(self, spec: NetworkSpec, onnx: Union[str, Path], iters: Optional[int] = None, device=None,
                 threads: Optional[int] = None):
        self.spec = spec
        self.name = spec.name
        self.clip_length = spec.clip_length
        self.path = Path(onnx)
        self.session = open_session(self.path, device=device, threads=threads)
        self.info = read_info(self.session, self.path)
        if self.info.model != spec.name:
            raise CheckpointError(
                f"{self.path}: expected an ONNX export of {spec.name}, found one of {self.info.model}"
            )
        window = window_length(spec)
        frames = self.session.get_inputs()[0]
        if self.info.window != window or frames.shape[1] != window:
            raise CheckpointError(
                f"{self.path}: expected an export of {spec.name}'s {window}-frame window, found one of "
                f"{self.info.window} frames (metadata) with input {frames.name} {list(frames.shape)}"
            )
        if iters is not None and int(iters) != self.info.iters:
            raise CheckpointError(
                f"{self.path}: exported with {self.info.iters} iterations, found iters={iters}; "
                f"export again with --iters {iters}"
            )
        self.iters = self.info.iters
        self.device = torch.device("cpu")  # frames go to onnxruntime as numpy arrays
        self.providers = self.session.get_providers()
        self.precision = "fp32"
        self.on_demand_pixels = None
        self.return_iterations = False
        self.model = None
        self.sha256 = _sha256(self.path)

    def __repr__(self) -> str:
        return (
            f"OnnxFlowMethod({self.name!r}, onnx={str(self.path)!r}, iters={self.iters}, "
            f"providers={self.providers}, clip_length={self.clip_length})"
        )

    def describe(self) -> dict:
        """What identifies this method in a run manifest (the ONNX file by SHA-256)."""
        return {
            "type": f"{type(self).__module__}.{type(self).__qualname__}",
            "name": self.name,
            "backend": "onnxruntime",
            "onnx_sha256": self.sha256,
            "iters": self.iters,
            "clip_length": self.clip_length,
        }

    def padding(self, height: int, width: int) -> tuple:
        """The torch method's padding; up to the exported size for a fixed-size file (see module docstring)."""
        pad = padding_for(height, width, self.spec.stride, self.spec.min_size)
        if "height" in self.info.dynamic:
            return pad
        (eh, ew), ph, pw = self.info.size, height + pad[2] + pad[3], width + pad[0] + pad[1]
        if ph > eh or pw > ew:
            raise ShapeError(
                f"{self.path}: frames of {height}x{width} run at {ph}x{pw}, larger than the exported {eh}x{ew}; "
                f"export again with: motionflow export --model {self.name} --size {height}x{width} ..."
            )
        dh, dw = eh - height, ew - width
        return (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2)

    def run_window(self, frames: torch.Tensor) -> WindowFlows:
        """One padded window ``(B, T, 3, H, W)`` through the session -> :class:`WindowFlows`."""
        if frames.shape[1] != self.info.window:
            raise ShapeError(f"{self.path}: expected windows of {self.info.window} frames, found {frames.shape[1]}")
        x = np.ascontiguousarray(frames.detach().cpu().numpy(), dtype=np.float32)
        if "batch" in self.info.dynamic or x.shape[0] == 1:
            outs = self.session.run(None, {"frames": x})
        else:
            per = [self.session.run(None, {"frames": x[i : i + 1]}) for i in range(x.shape[0])]
            outs = [np.concatenate(o, axis=0) for o in zip(*per)]
        flow = torch.from_numpy(outs[0])
        back = torch.from_numpy(outs[1]) if len(outs) > 1 else None
        return WindowFlows(
            forward={p: flow[:, i] for i, p in enumerate(self.info.forward_pairs)},
            backward={p: back[:, i] for i, p in enumerate(self.info.backward_pairs)} if back is not None else {},
        )


def create_onnx_method(spec: NetworkSpec, backend: str, onnx, checkpoint=None, weights=None, iters=None, device=None,
                       threads: Optional[int] = None, **options) -> OnnxFlowMethod:
    """``make_network_method(..., backend="onnxruntime", onnx=PATH)``: the checks, then :class:`OnnxFlowMethod`.

    Raises:
        UnknownNameError: an unknown ``backend``, ``onnx`` with the torch backend, or a torch-only option
            (``precision``, ``on_demand_pixels``, ``return_iterations``).
        CheckpointError: no ``onnx`` file, or a checkpoint / ``weights`` given too (the weights are in the file).
    """
    if backend not in ("torch", "onnxruntime"):
        raise UnknownNameError(f"{spec.name}: backend must be 'torch' or 'onnxruntime', found {backend!r}")
    if backend == "torch":
        raise UnknownNameError(f"{spec.name}: onnx={str(onnx)!r} needs backend='onnxruntime' (--backend onnxruntime)")
    if onnx is None:
        raise CheckpointError(
            f"{spec.name}: backend='onnxruntime' needs onnx=PATH (--onnx), a file written by "
            f"motionflow export --model {spec.name}"
        )
    if checkpoint is not None or weights is not None:
        raise CheckpointError(
            f"{spec.name}: backend='onnxruntime' takes its weights from {str(onnx)!r}; found "
            f"{'checkpoint' if checkpoint is not None else 'weights'}=... as well (drop it)"
        )
    torch_only = sorted(options)
    if torch_only:
        raise UnknownNameError(
            f"{spec.name}: option(s) {', '.join(torch_only)} apply to the torch backend only, not to onnxruntime"
        )
    return OnnxFlowMethod(spec, onnx, iters=iters, device=device, threads=threads)


def exported_network(path: Union[str, Path]) -> str:
    """The network name an exported file was made from (its ``motionflow.model`` metadata)."""
    return read_info(open_session(path, device="cpu", threads=1, optimize=False), path).model
