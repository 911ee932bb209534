"""The adapter that turns a flow network into a registered optical-flow method.

A *method* (``motionflow.registry``) is called as ``method(frames)`` with ``frames`` a float tensor
``(B, T, 3, H, W)``, RGB in ``[0, 255]``, ``T >= 2``, and returns a
:class:`~motionflow.types.FlowPrediction` with forward flows ``(B, T-1, 2, H, W)`` (frame t -> t+1) and,
where the network estimates them, backward flows ``(B, T-1, 2, H, W)`` (frame t+1 -> t). The video
engine calls it on clips of ``clip_length`` frames overlapping by one and stitches the clips.

:class:`NetworkFlowMethod` does, for every call:

1. **Normalisation.** All four official networks take RGB in ``[0, 255]`` and normalise internally
   with ``2 * x / 255 - 1``; our networks keep that forward signature, so the adapter passes the
   frames through unchanged (``spec.normalize`` is a hook for a network that wants other input).
2. **Padding** (:func:`pad_frames`): replicate-pad each side symmetrically, as RAFT's ``InputPadder``
   (``mode='sintel'``), to a multiple of the stride (8) **and** to at least ``min_size`` = 128 px per
   side. The official networks divide by ``size - 1`` of their coarsest (1/64) correlation level, which
   is NaN below 128 px (SPEC section 2), so small inputs are padded up, never passed through. The
   flows are cropped back exactly (:func:`crop_flow`); padding does not change flow values (pixel
   offsets are invariant to a translation of the frame).
3. **Windowing inside the clip** (:class:`NetworkSpec.windows`): the network's own windows over the
   ``T`` frames, each run by ``spec.run_window``; every pair ``(t, t+1)`` receives the flow of the
   first window that produces it. Windows may reach outside the clip (start < 0 or past the end):
   those frames are the edge frames repeated, and flows that touch a repeated frame are dropped.
   Plans provided here: :func:`pairwise_windows` (RAFT), :func:`sliding_windows` (VideoFlow BOF
   triples / MOF quintuples, keeping the inner flows) and :func:`overlapping_groups` (StreamFlow SIM:
   groups of 4 overlapping by one, the last aligned to the clip end).
4. **Precision**: ``torch.autocast`` with fp16 or bf16 on CUDA (``precision=``); CPU runs in float32.
5. **Memory-bounded correlation**: when the padded frame has more than ``on_demand_pixels`` pixels
   (default :data:`ON_DEMAND_PIXELS` = 1,000,000, i.e. above ~1 MP, where RAFT's level-0 volume
   ``(H/8 * W/8)^2`` floats passes 1 GB per pair: 1080p needs 4.3 GB), divided by the square root of
   the network's ``correlation_volumes`` (so that every network switches at the same total volume:
   MOF's six volumes at 0.41 MP), the adapter sets
   ``model.corr_on_demand = True`` for the call, so the network uses
   :class:`~motionflow.ops.correlation.OnDemandCorrPyramid` (same lookup, no volume). A network that
   supports this has a boolean attribute ``corr_on_demand``.
6. **No weights, no method**: :func:`make_network_method` refuses without a checkpoint, raising a
   :class:`~motionflow.errors.CheckpointError` that says where the official weights are published,
   unless ``weights="random"`` is passed explicitly (benchmarks and tests).

A network plugs in with a :class:`NetworkSpec`: its name, ``clip_length``, stride, default
iterations, default precision, the window plan and ``run_window``.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F

from ..errors import CheckpointError, ShapeError, UnknownNameError
from ..types import FlowPrediction
from .weights import no_checkpoint_error

#: Above this many pixels (padded ``H * W``) the memory-bounded correlation is used.
ON_DEMAND_PIXELS = 1_000_000
#: Smallest side the official networks handle (coarsest correlation level >= 2 px).
MIN_SIZE = 128


# ------------------------------------------------------------------------------------------ windows
def pairwise_windows(num_frames: int) -> list:
    """``[(t, 2) for t in 0..T-2]``: every consecutive pair on its own (RAFT)."""
    return [(t, 2) for t in range(num_frames - 1)]


def sliding_windows(num_frames: int, size: int, step: Optional[int] = None) -> list:
    """Windows ``(start, size)`` whose *inner* frames (all but the first and last) cover every frame.

    VideoFlow estimates flow for the inner frames of its window only: BOF (``size=3``) from the centre
    frame to both neighbours, MOF (``size=5``) for the three inner frames, forward and backward.
    ``step`` (default ``size - 2``) moves the window so that consecutive windows' inner frames tile the
    clip: BOF ``T=4`` -> ``[(-1, 3), (0, 3), (1, 3), (2, 3)]``; MOF ``T=8`` -> ``[(-1, 5), (2, 5), (4, 5)]``
    (the last window is aligned so that its inner frames end at the last frame). Frames outside the clip
    (index ``-1`` or ``T``) are the edge frames repeated, as ptlflow does at sequence ends (the official
    VideoFlow code has no rule for clip edges); the adapter drops every flow whose source or target is
    a repeated frame.
    """
    inner = size - 2
    if inner < 1:
        raise ShapeError(f"sliding_windows: size must be >= 3, found {size}")
    step = inner if step is None else int(step)
    starts = [-1]
    while starts[-1] + inner < num_frames - 1:  # inner frames of the last window end before T-1
        starts.append(starts[-1] + step)
    last_aligned = num_frames - size + 1  # inner frames end exactly at T-1
    if len(starts) > 1 and starts[-1] > last_aligned:
        starts[-1] = max(last_aligned, starts[-2] + 1)
    return [(s, size) for s in starts]


def overlapping_groups(num_frames: int, size: int = 4, overlap: int = 1) -> list:
    """Groups of ``size`` frames overlapping by ``overlap``, the last aligned to the clip end (StreamFlow SIM).

    ``T = 8, size = 4``: ``[(0, 4), (3, 4), (4, 4)]``. A clip shorter than ``size`` gives ``[(0, size)]``:
    the adapter repeats the last frame to fill the group and drops the flows beyond the clip.
    """
    if num_frames <= size:
        return [(0, size)]
    step = size - overlap
    starts = list(range(0, num_frames - size + 1, step))
    if starts[-1] + size < num_frames:
        starts.append(num_frames - size)
    return [(s, size) for s in starts]


def window_indices(start: int, length: int, num_frames: int) -> list:
    """Frame indices of window ``(start, length)``, edge frames repeated outside ``0..T-1``."""
    return [min(max(i, 0), num_frames - 1) for i in range(start, start + length)]


@dataclass
class WindowFlows:
    """What ``run_window`` returns for a window of ``n`` frames.

    Attributes:
        forward: ``{p: (B, 2, H, W)}`` flow from window frame ``p`` to ``p + 1`` (pairs it estimates).
        backward: ``{p: (B, 2, H, W)}`` flow from window frame ``p + 1`` to ``p``.
        iterations: ``{p: [(B, 2, H, W), ...]}`` per-iteration forward flows (optional).
    """

    forward: dict
    backward: dict = field(default_factory=dict)
    iterations: dict = field(default_factory=dict)


@dataclass
class NetworkSpec:
    """How a network runs as a method.

    Attributes:
        name: registered method name (``raft``...).
        clip_length: frames per call the method prefers (RAFT 2, VideoFlow BOF 8 / MOF 9, StreamFlow 4).
        windows: ``windows(T) -> [(start, length), ...]`` covering every pair of a T-frame clip.
        run_window: ``run_window(model, frames (B, n, 3, H, W), iters, return_iterations) -> WindowFlows``
            on padded frames (H, W multiples of ``stride``, >= ``min_size``).
        default_iters: refinement iterations when the caller gives none.
        default_precision: ``"fp32"``, ``"fp16"`` or ``"bf16"`` (autocast dtype on CUDA).
        stride: padding multiple (8 for all four networks).
        min_size: minimal padded side (128).
        normalize: optional ``(B, T, 3, H, W) [0,255] -> network input`` (default: unchanged).
        correlation_volumes: all-pairs correlation volumes one window builds (RAFT 1, VideoFlow BOF 2,
            MOF 6, StreamFlow 3); the on-demand threshold is ``on_demand_pixels / sqrt(volumes)``.
    """

    name: str
    clip_length: int
    windows: Callable[[int], list]
    run_window: Callable[..., WindowFlows]
    default_iters: int
    default_precision: str = "fp32"
    stride: int = 8
    min_size: int = MIN_SIZE
    normalize: Optional[Callable] = None
    correlation_volumes: int = 1


# ------------------------------------------------------------------------------------------ padding
def padding_for(height: int, width: int, stride: int = 8, min_size: int = MIN_SIZE) -> tuple:
    """``(left, right, top, bottom)`` replicate padding to a multiple of ``stride`` and >= ``min_size``.

    Split as RAFT's ``InputPadder`` (sintel mode): half (floor) before, the rest after.
    """
    def total(n: int) -> int:
        target = max(n, min_size)
        target = -(-target // stride) * stride
        return target - n

    ph, pw = total(height), total(width)
    return (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)


def pad_frames(frames: torch.Tensor, pad: tuple) -> torch.Tensor:
    """Replicate-pad ``(B, T, C, H, W)`` by ``pad = (left, right, top, bottom)``."""
    if not any(pad):
        return frames
    b, t, c, h, w = frames.shape
    out = F.pad(frames.reshape(b * t, c, h, w), pad, mode="replicate")
    return out.reshape(b, t, c, out.shape[-2], out.shape[-1])


def crop_flow(flow: torch.Tensor, pad: tuple) -> torch.Tensor:
    """Undo :func:`pad_frames` on ``(..., H_pad, W_pad)``: exact crop back to the input size."""
    left, right, top, bottom = pad
    h, w = flow.shape[-2:]
    return flow[..., top : h - bottom, left : w - right]


# ------------------------------------------------------------------------------------------ method
class NetworkFlowMethod:
    """A network as an optical-flow method (see the module docstring for what it does per call).

    Args:
        spec: the :class:`NetworkSpec`.
        model: the network (``nn.Module``), weights loaded.
        iters: refinement iterations (default ``spec.default_iters``).
        device: ``"cpu"``, ``"cuda"``, ``torch.device`` or None (CUDA if available).
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"`` (autocast on CUDA only; default the spec's).
        on_demand_pixels: padded pixel count above which the memory-bounded correlation is used by a
            network with one correlation volume per window (``spec.correlation_volumes`` k: above
            ``on_demand_pixels / sqrt(k)``); ``None`` = never, ``0`` = always.
        return_iterations: also return per-iteration forward flows in ``FlowPrediction.iterations``.
    """

    def __init__(
        self,
        spec: NetworkSpec,
        model: torch.nn.Module,
        iters: Optional[int] = None,
        device=None,
        precision: Optional[str] = None,
        on_demand_pixels: Optional[int] = ON_DEMAND_PIXELS,
        return_iterations: bool = False,
    ):
        self.spec = spec
        self.name = spec.name
        self.clip_length = spec.clip_length
        self.iters = int(iters) if iters is not None else spec.default_iters
        if self.iters < 1:
            raise ShapeError(f"{spec.name}: iters must be >= 1, found {self.iters}")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.precision = precision or spec.default_precision
        if self.precision not in ("fp32", "fp16", "bf16"):
            raise UnknownNameError(
                f"{spec.name}: precision must be one of fp32, fp16, bf16; found {self.precision!r}"
            )
        self.on_demand_pixels = on_demand_pixels
        self.return_iterations = return_iterations
        self.model = model.to(self.device).eval()

    def __repr__(self) -> str:
        return (
            f"NetworkFlowMethod({self.name!r}, iters={self.iters}, device={str(self.device)!r}, "
            f"precision={self.precision!r}, clip_length={self.clip_length})"
        )

    def describe(self) -> dict:
        """What makes this method's numbers: name, iterations, precision, correlation switch, and a SHA-256
        of the network's weights (another checkpoint, or a re-configured object, describes differently)."""
        import hashlib

        digest = hashlib.sha256()
        for key, value in sorted(self.model.state_dict().items()):
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        return {"method": self.name, "iters": self.iters, "precision": self.precision, "clip_length": self.clip_length,
                "on_demand_pixels": self.on_demand_pixels, "weights_sha256": digest.hexdigest()}

    def _autocast(self):
        if self.device.type != "cuda" or self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast("cuda", dtype=dtype)

    def uses_on_demand(self, height: int, width: int) -> bool:
        """Whether a padded ``height x width`` frame runs the memory-bounded correlation."""
        if self.on_demand_pixels is None:
            return False
        return height * width * self.spec.correlation_volumes**0.5 > self.on_demand_pixels

    def padding(self, height: int, width: int) -> tuple:
        """``(left, right, top, bottom)`` padding of a ``height x width`` clip (:func:`padding_for`)."""
        return padding_for(height, width, self.spec.stride, self.spec.min_size)

    def run_window(self, frames: torch.Tensor) -> WindowFlows:
        """One padded window ``(B, n, 3, H, W)`` -> :class:`WindowFlows` (``spec.run_window`` on the network;
        the ONNX Runtime method overrides it)."""
        return self.spec.run_window(self.model, frames, self.iters, self.return_iterations)

    @torch.no_grad()
    def __call__(self, frames: torch.Tensor, windows: Optional[list] = None) -> FlowPrediction:
        """Flow for every consecutive pair of ``frames`` ``(B, T, 3, H, W)`` in [0, 255].

        ``windows``: an explicit window plan ``[(start, length), ...]`` instead of ``spec.windows(T)``
        (an evaluation protocol runs exactly the official windows: ``[(0, T)]`` is one forward pass on
        the whole clip); the pairs no window estimates are NaN then.

        Returns:
            FlowPrediction with ``flow`` ``(B, T-1, 2, H, W)`` float32 on the input's device, ``backward``
            likewise where the network estimates backward flow for every pair (else None), and
            ``meta`` = method, iters, padding, on_demand_corr, seconds.
        """
        if not isinstance(frames, torch.Tensor):
            raise ShapeError(f"{self.name}: frames must be a torch tensor (B, T, 3, H, W), found {type(frames).__name__}")
        if frames.ndim != 5 or frames.shape[2] != 3 or frames.shape[1] < 2:
            raise ShapeError(
                f"{self.name}: frames must have shape (B, T>=2, 3, H, W), found {tuple(frames.shape)}"
            )
        t0 = time.perf_counter()
        out_device = frames.device
        b, t, _, h, w = frames.shape
        x = frames.to(self.device, torch.float32)
        if self.spec.normalize is not None:
            x = self.spec.normalize(x)
        pad = self.padding(h, w)
        x = pad_frames(x, pad)
        hp, wp = x.shape[-2:]
        on_demand = self.uses_on_demand(hp, wp)
        had_attr = hasattr(self.model, "corr_on_demand")
        previous = getattr(self.model, "corr_on_demand", False)
        if had_attr:
            self.model.corr_on_demand = on_demand

        forward: dict = {}
        backward: dict = {}
        iterations: dict = {}
        try:
            with self._autocast():
                for start, length in self.spec.windows(t) if windows is None else windows:
                    index = window_indices(start, length, t)
                    res = self.run_window(x[:, index])
                    for p in range(length - 1):
                        pair = start + p
                        # keep a flow only if both of its frames are real frames of the clip
                        if not (0 <= pair < t - 1 and index[p] == pair and index[p + 1] == pair + 1):
                            continue
                        if p in res.forward:
                            forward.setdefault(pair, res.forward[p])
                        if p in res.backward:
                            backward.setdefault(pair, res.backward[p])
                        if p in res.iterations:
                            iterations.setdefault(pair, res.iterations[p])
        finally:
            if had_attr:
                self.model.corr_on_demand = previous

        missing = [p for p in range(t - 1) if p not in forward]
        if missing and (windows is None or not forward):
            raise ShapeError(f"{self.name}: windows of a {t}-frame clip left pairs {missing} without flow")

        def stack(d: dict) -> torch.Tensor:
            some = next(iter(d.values()))
            f = torch.stack([d[p].float() if p in d else torch.full_like(some, float("nan")).float() for p in range(t - 1)], dim=1)
            return crop_flow(f, pad).contiguous().to(out_device)

        flow = stack(forward)
        back = stack(backward) if all(p in backward for p in range(t - 1)) else None
        its = None
        if self.return_iterations and all(p in iterations for p in range(t - 1)):
            n = min(len(iterations[p]) for p in range(t - 1))
            its = [stack({p: iterations[p][k] for p in range(t - 1)}) for k in range(n)]
        return FlowPrediction(
            flow=flow,
            backward=back,
            iterations=its,
            meta={
                "method": self.name,
                "iters": self.iters,
                "padding": pad,
                "on_demand_corr": on_demand,
                "precision": self.precision if self.device.type == "cuda" else "fp32",
                "seconds": time.perf_counter() - t0,
            },
        )


def make_network_method(
    spec: NetworkSpec,
    build: Callable[[], torch.nn.Module],
    checkpoint: Union[str, Path, dict, None] = None,
    weights: Optional[str] = None,
    iters: Optional[int] = None,
    device=None,
    allow_pickle: bool = False,
    backend: str = "torch",
    onnx: Union[str, Path, None] = None,
    **options,
) -> NetworkFlowMethod:
    """Build ``spec``'s network, load its official checkpoint, and wrap it as a method.

    Args:
        spec: the network's :class:`NetworkSpec`.
        build: ``build() -> nn.Module`` (random initialisation).
        checkpoint: official weights file (or state dict); required unless ``weights="random"``.
        weights: ``"random"`` to run the random initialisation on purpose (benchmarks, tests).
        iters, device: see :class:`NetworkFlowMethod`; further ``options`` go to it too
            (``precision``, ``on_demand_pixels``, ``return_iterations``).
        allow_pickle: see :func:`motionflow.models.load_checkpoint`.
        backend: ``"torch"``, or ``"onnxruntime"`` to run the ONNX export ``onnx`` (a file written by
            ``motionflow export``; no checkpoint then) with
            :class:`~motionflow.models.onnx_runtime.OnnxFlowMethod`.

    Raises:
        CheckpointError: no checkpoint (the message says where the official weights are published),
            or a checkpoint that does not match the network.
    """
    from . import load_official_checkpoint

    if backend != "torch" or onnx is not None:
        from .onnx_runtime import create_onnx_method

        return create_onnx_method(spec, backend, onnx, checkpoint=checkpoint, weights=weights, iters=iters,
                                  device=device, **options)
    if weights not in (None, "random"):
        raise UnknownNameError(f"{spec.name}: weights must be None or 'random', found {weights!r}")
    if checkpoint is not None and weights == "random":
        raise CheckpointError(f"{spec.name}: pass either checkpoint=... or weights='random', not both")
    model = build()
    if checkpoint is not None:
        load_official_checkpoint(model, checkpoint, allow_pickle=allow_pickle)
    elif weights != "random":
        raise no_checkpoint_error(spec.name)
    return NetworkFlowMethod(spec, model, iters=iters, device=device, **options)
