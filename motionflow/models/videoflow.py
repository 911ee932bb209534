"""VideoFlow (Shi et al., ICCV 2023): TROF (three-frame, ``BOFNet``) and MOF with motion propagation.

**TROF / BOF** (:class:`BOFNet`): three frames ``(t-1, t, t+1)`` -> the flows of the centre frame to
both neighbours, refined *jointly* by one recurrent operator. ``fnet`` (Twins-SVT, first two stages)
encodes the three frames, ``cnet`` the centre frame (128 hidden channels after tanh, 128 context
channels after ReLU). Two RAFT correlation pyramids (4 levels, radius 4) go from the centre frame to
the next and to the previous frame. At every iteration the SK update block
(:class:`~motionflow.models.blocks.sk.TROFUpdateBlock`) encodes both correlations and both flows,
aggregates the motion globally with GMA attention computed once from the context, updates the
hidden state and predicts both flow updates and the convex-upsampling masks.

**MOF** (:class:`MOFNet`): ``N`` frames -> the bidirectional flows of the ``N - 2`` inner frames. The
TROFs of all inner frames run in parallel (batched) and exchange information through the **motion
propagation** module (MOP, :mod:`motionflow.models.blocks.videoflow_mop`): a 48-channel motion state
per inner frame, warped from the neighbouring inner frames along the current flows at every
iteration.

Layouts (B = batch, all frames in temporal order, values in [0, 255], RGB):

* BOF: input ``(B, 3, 3, H, W)``; every flow ``(B, 2, 2, H, W)``, axis 1: 0 = centre -> next,
  1 = centre -> previous.
* MOF: input ``(B, N, 3, H, W)``; every flow ``(B, 2 * (N - 2), 2, H, W)``, axis 1: ``0 .. N-3`` =
  forward flows of frames ``1 .. N-2`` (``t -> t+1``), ``N-2 .. 2N-5`` = their backward flows
  (``t -> t-1``).

H and W must be multiples of 8 (the method adapter pads). The official code returns NaN when ``H/64``
or ``W/64`` is below 2 (coarsest correlation level of one pixel): inputs must be at least 128 px per side.

Weights: the official ``{BOF,MOF}_{things,sintel,kitti}.pth`` files (flat ``{"module.<key>": tensor}``
state dicts of ``nn.DataParallel``) load strictly with :func:`load_videoflow_checkpoint`. State-dict
names are the official ones; entries that the official files carry but never use (the final Twins
LayerNorms, GMA's relative position tables, MOF's ``velocity_update_block``) are accepted by name
(:data:`UNUSED_KEYS`).

Defaults: 32 iterations (``configs/sintel_submission.py`` / ``multiframes_sintel_submission.py``; the
things configs use 12 for BOF and 6 for MOF in training). Deviation: the official submission configs
run the networks under CUDA fp16 autocast; these modules run in the dtype of their parameters.

Memory (issue 21): above a size budget the Twins sub-sampled attention and GMA use the fused
``scaled_dot_product_attention`` (float rounding apart the same function; the official code builds the
matrices: 24 GiB for BOF and 55 GiB for MOF at 1080x1920), the Twins windows and MLPs run in chunks,
and the correlation goes on demand (:mod:`motionflow.models.blocks.memory`): 1.3 / 2.4 GiB on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Union

import torch
from torch import nn

from motionflow.errors import ShapeError
from motionflow.models.blocks.gma import UNUSED_POSITION_KEYS, ContextAttention
from motionflow.models.blocks.sk import TROFUpdateBlock
from motionflow.models.blocks.twins import TwinsEncoder
from motionflow.models.blocks.videoflow_mop import UNUSED_MOP_KEYS, MOFUpdateBlock
from motionflow.ops.correlation import correlation_pyramid
from motionflow.ops.upsample import convex_upsample
from motionflow.ops.warp import coords_grid

__all__ = [
    "BOFNet",
    "MOFNet",
    "VideoFlowOutput",
    "UNUSED_KEYS",
    "DEFAULT_ITERS",
    "build_bof",
    "build_mof",
    "load_videoflow_checkpoint",
    "create_bof_method",
    "create_mof_method",
    "run_bof_window",
    "run_mof_window",
]

#: Refinement iterations of the official evaluation / inference configs.
DEFAULT_ITERS = 32
CORR_LEVELS = 4
CORR_RADIUS = 4
#: Output stride of the encoders (1/8 resolution) and the convex-upsampling factor.
STRIDE = 8

_TWINS_NORM = ("cnet.svt.norm.weight", "cnet.svt.norm.bias", "fnet.svt.norm.weight", "fnet.svt.norm.bias")
#: Keys of the official checkpoints that never influence the output, per network (accepted by name).
UNUSED_KEYS: dict[str, tuple[str, ...]] = {
    "videoflow-bof": _TWINS_NORM + tuple(f"att.{k}" for k in UNUSED_POSITION_KEYS),
    "videoflow-mof": _TWINS_NORM
    + tuple(f"update_block.encoder.{k}" for k in UNUSED_MOP_KEYS)
    + tuple(f"att.{k}" for k in UNUSED_POSITION_KEYS),
}


@dataclass
class VideoFlowOutput:
    """What :class:`BOFNet` / :class:`MOFNet` return.

    Attributes:
        flow_predictions: one full-resolution flow per iteration (index 0 = after iteration 1), each
            ``(B, F, 2, H, W)`` with ``F = 2`` (BOF) or ``2 * (N - 2)`` (MOF); only the final one when
            the forward ran with ``all_iterations=False``.
        flow_low: the final flows at 1/8 resolution ``(B, F, 2, H/8, W/8)`` in 1/8-resolution pixels.
    """

    flow_predictions: list = field(default_factory=list)
    flow_low: Optional[torch.Tensor] = None

    @property
    def flow(self) -> torch.Tensor:
        """The final full-resolution flows ``(B, F, 2, H, W)``."""
        return self.flow_predictions[-1]


def _check_clip(images: torch.Tensor, frames: Optional[int], who: str) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 5 or images.shape[2] != 3:
        found = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ShapeError(f"{who} images: expected a tensor (B, N, 3, H, W) in [0, 255], found {found}")
    n, h, w = images.shape[1], images.shape[-2], images.shape[-1]
    if frames is not None and n != frames:
        raise ShapeError(f"{who} images: expected {frames} frames (B, {frames}, 3, H, W), found {n}")
    if frames is None and n < 3:
        raise ShapeError(f"{who} images: expected at least 3 frames (B, N>=3, 3, H, W), found {n}")
    if h % STRIDE or w % STRIDE:
        raise ShapeError(f"{who} images: H and W must be multiples of {STRIDE} (pad first), found {h}x{w}")


def _iterations(iters: Optional[int], default: int, who: str) -> int:
    n = default if iters is None else int(iters)
    if n < 1:
        raise ShapeError(f"{who} iters: expected a positive number of iterations, found {iters}")
    return n


class _VideoFlowBase(nn.Module):
    """Encoders and GMA attention shared by BOF and MOF (state-dict names ``cnet``, ``fnet``, ``att``)."""

    #: ``True``: the memory-bounded correlation lookup; ``False``: the all-pairs volumes; ``None``: memory-
    #: bounded above :data:`~motionflow.ops.correlation.ALL_PAIRS_MAX_BYTES` (the method adapter sets it per call).
    corr_on_demand: Optional[bool] = None

    def __init__(self, iters: int):
        super().__init__()
        self.hidden_dim = 128
        self.context_dim = 128
        self.iters = int(iters)
        self.cnet = TwinsEncoder()
        self.fnet = TwinsEncoder()

    def correlation(self, fmap1: torch.Tensor, fmap2: torch.Tensor):
        """RAFT correlation pyramid (4 levels, radius 4) from ``fmap1`` to ``fmap2`` ``(B, 256, h, w)``."""
        return correlation_pyramid(fmap1, fmap2, CORR_LEVELS, CORR_RADIUS, on_demand=self.corr_on_demand)

    def encode_context(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Context of normalised frames ``(B', 3, H, W)`` -> ``(net, inp, attention)``.

        ``net = tanh(cnet[:, :128])`` (hidden state), ``inp = relu(cnet[:, 128:])`` (context),
        ``attention = att(inp)`` ``(B', 1, h*w, h*w)`` (its factors above the attention's ``max_bytes``).
        """
        cnet = self.cnet(frames)
        net, inp = torch.split(cnet, [self.hidden_dim, self.context_dim], dim=1)
        net, inp = torch.tanh(net), torch.relu(inp)
        return net, inp, self.att(inp)


class BOFNet(_VideoFlowBase):
    """VideoFlow TROF network (official ``BOFNet`` with ``gma='GMA-SK2'``, Twins encoders).

    Args:
        iters: default number of refinement iterations (``decoder_depth``; official eval: 32).

    ``forward(images (B, 3, 3, H, W) in [0, 255], iters=None, all_iterations=True) -> VideoFlowOutput``
    with flows ``(B, 2, 2, H, W)``: ``[:, 0]`` centre -> next frame, ``[:, 1]`` centre -> previous frame.
    ``all_iterations=False`` upsamples and keeps the last iteration only (``flow_predictions`` has one
    entry, the same final flow; the method adapter's default: 32 full-resolution flows are not kept).
    """

    checkpoint_unused_keys = UNUSED_KEYS["videoflow-bof"]

    def __init__(self, iters: int = DEFAULT_ITERS):
        super().__init__(iters)
        self.update_block = TROFUpdateBlock(CORR_LEVELS * (2 * CORR_RADIUS + 1) ** 2)
        self.att = ContextAttention(dim=128, heads=1, dim_head=128)

    def forward(self, images: torch.Tensor, iters: Optional[int] = None, all_iterations: bool = True) -> VideoFlowOutput:
        _check_clip(images, 3, "BOFNet")
        iters = _iterations(iters, self.iters, "BOFNet")
        B, N, _, H, W = images.shape
        h, w = H // STRIDE, W // STRIDE
        images = 2 * (images / 255.0) - 1.0

        fmaps = self.fnet(images.reshape(B * N, 3, H, W)).reshape(B, N, -1, h, w).float()
        corr_prev = self.correlation(fmaps[:, 1], fmaps[:, 0])
        corr_next = self.correlation(fmaps[:, 1], fmaps[:, 2])
        net, inp, attention = self.encode_context(images[:, 1])

        coords0 = coords_grid(B, h, w, device=images.device, dtype=fmaps.dtype)
        coords_next, coords_prev = coords0.clone(), coords0.clone()
        predictions = []
        for it in range(iters):
            coords_next, coords_prev = coords_next.detach(), coords_prev.detach()
            corr = torch.cat([corr_next(coords_next), corr_prev(coords_prev)], dim=1)
            flow = torch.cat([coords_next - coords0, coords_prev - coords0], dim=1)
            net, up_mask, delta_flow = self.update_block(net, inp, corr, flow, attention)
            coords_next = coords_next + delta_flow[:, 0:2]
            coords_prev = coords_prev + delta_flow[:, 2:4]
            if not (all_iterations or it == iters - 1):
                continue
            mask_prev, mask_next = torch.split(up_mask, [64 * 9, 64 * 9], dim=1)
            up_next = convex_upsample(coords_next - coords0, mask_next, STRIDE)
            up_prev = convex_upsample(coords_prev - coords0, mask_prev, STRIDE)
            predictions.append(torch.stack([up_next, up_prev], dim=1))
        flow_low = torch.stack([coords_next - coords0, coords_prev - coords0], dim=1)
        return VideoFlowOutput(predictions, flow_low)


class MOFNet(_VideoFlowBase):
    """VideoFlow MOF network (official ``MOFNet`` with ``Tfusion='stack'``, Twins encoders, stride 8).

    Args:
        iters: default number of refinement iterations (official eval: 32).

    ``forward(images (B, N, 3, H, W) in [0, 255], N >= 3, iters=None, all_iterations=True) -> VideoFlowOutput``
    with flows ``(B, 2 * (N - 2), 2, H, W)``: forward flows of frames ``1 .. N-2`` then their backward
    flows. Trained with N = 5; other N work (the inner frames are batched). ``all_iterations=False``:
    only the last iteration is upsampled and kept (as :class:`BOFNet`).
    """

    checkpoint_unused_keys = UNUSED_KEYS["videoflow-mof"]

    def __init__(self, iters: int = DEFAULT_ITERS):
        super().__init__(iters)
        self.update_block = MOFUpdateBlock(CORR_LEVELS * (2 * CORR_RADIUS + 1) ** 2)
        self.att = ContextAttention(dim=128, heads=1, dim_head=128)

    def forward(self, images: torch.Tensor, iters: Optional[int] = None, all_iterations: bool = True) -> VideoFlowOutput:
        _check_clip(images, None, "MOFNet")
        iters = _iterations(iters, self.iters, "MOFNet")
        B, N, _, H, W = images.shape
        T = N - 2
        h, w = H // STRIDE, W // STRIDE
        images = 2 * (images / 255.0) - 1.0

        fmaps = self.fnet(images.reshape(B * N, 3, H, W)).reshape(B, N, -1, h, w).float()
        centre = fmaps[:, 1 : N - 1].reshape(B * T, -1, h, w)
        forward_corr_fn = self.correlation(centre, fmaps[:, 2:N].reshape(B * T, -1, h, w))
        backward_corr_fn = self.correlation(centre, fmaps[:, 0 : N - 2].reshape(B * T, -1, h, w))
        net, inp, attention = self.encode_context(images[:, 1 : N - 1].reshape(B * T, 3, H, W))

        coords0 = coords_grid(B * T, h, w, device=images.device, dtype=fmaps.dtype)
        forward_coords, backward_coords = coords0.clone(), coords0.clone()
        hidden = None
        predictions = []
        for it in range(iters):
            forward_coords, backward_coords = forward_coords.detach(), backward_coords.detach()
            forward_corr = forward_corr_fn(forward_coords)
            backward_corr = backward_corr_fn(backward_coords)
            net, hidden, up_mask, delta_flow = self.update_block(
                net,
                hidden,
                inp,
                forward_corr,
                backward_corr,
                forward_coords - coords0,
                backward_coords - coords0,
                coords0,
                attention,
                B,
            )
            forward_coords = forward_coords + delta_flow[:, 0:2]
            backward_coords = backward_coords + delta_flow[:, 2:4]
            if not (all_iterations or it == iters - 1):
                continue
            mask_fwd, mask_bwd = torch.split(up_mask, [64 * 9, 64 * 9], dim=1)
            up_fwd = convex_upsample(forward_coords - coords0, mask_fwd, STRIDE).reshape(B, T, 2, H, W)
            up_bwd = convex_upsample(backward_coords - coords0, mask_bwd, STRIDE).reshape(B, T, 2, H, W)
            predictions.append(torch.cat([up_fwd, up_bwd], dim=1))
        flow_low = torch.cat(
            [(forward_coords - coords0).reshape(B, T, 2, h, w), (backward_coords - coords0).reshape(B, T, 2, h, w)],
            dim=1,
        )
        return VideoFlowOutput(predictions, flow_low)


def load_videoflow_checkpoint(model: nn.Module, source: Union[str, Path, Mapping], allow_pickle: bool = False):
    """Load an official VideoFlow checkpoint (file path or state dict) into ``model`` strictly.

    Unwraps ``module.`` prefixes, maps every key to the identically named entry of ``model``, accepts
    the official never-used keys (``model.checkpoint_unused_keys``) by name and fails with a
    :class:`~motionflow.errors.CheckpointError` listing every missing, unexpected or mis-shaped key.
    Returns the :class:`~motionflow.models.weights.LoadReport`.
    """
    from motionflow.models.weights import load_checkpoint

    return load_checkpoint(model, source, unused_keys=model.checkpoint_unused_keys, allow_pickle=allow_pickle)


def _depth(iters: Optional[int], decoder_depth: Optional[int]) -> int:
    if iters is not None and decoder_depth is not None and int(iters) != int(decoder_depth):
        raise ShapeError(f"give iters or decoder_depth, not both with different values ({iters} vs {decoder_depth})")
    n = decoder_depth if decoder_depth is not None else iters
    return _iterations(n, DEFAULT_ITERS, "VideoFlow")


def build_bof(
    checkpoint: Union[str, Path, Mapping, None] = None, iters: Optional[int] = None, decoder_depth: Optional[int] = None
) -> BOFNet:
    """A :class:`BOFNet` in eval mode (``iters`` / the official name ``decoder_depth``: default 32),
    with ``checkpoint`` (path or state dict) loaded strictly if given."""
    model = BOFNet(iters=_depth(iters, decoder_depth))
    if checkpoint is not None:
        load_videoflow_checkpoint(model, checkpoint)
    return model.eval()


def build_mof(
    checkpoint: Union[str, Path, Mapping, None] = None, iters: Optional[int] = None, decoder_depth: Optional[int] = None
) -> MOFNet:
    """A :class:`MOFNet` in eval mode (``iters`` / ``decoder_depth``: default 32), with ``checkpoint``
    (path or state dict) loaded strictly if given."""
    model = MOFNet(iters=_depth(iters, decoder_depth))
    if checkpoint is not None:
        load_videoflow_checkpoint(model, checkpoint)
    return model.eval()


# ------------------------------------------------------------------------------------------ methods
def run_bof_window(model: BOFNet, frames: torch.Tensor, iters: int, return_iterations: bool = False):
    """Method adapter hook: a 3-frame window ``(B, 3, 3, H, W)`` -> the centre frame's two flows.

    Window pair ``p`` is frames ``(p, p+1)``: the centre -> next flow is the forward flow of pair 1,
    the centre -> previous flow the backward flow of pair 0.
    """
    from motionflow.models.method import WindowFlows

    out = model(frames, iters=iters, all_iterations=return_iterations)
    its = {1: [f[:, 0] for f in out.flow_predictions]} if return_iterations else {}
    return WindowFlows(forward={1: out.flow[:, 0]}, backward={0: out.flow[:, 1]}, iterations=its)


def run_mof_window(model: MOFNet, frames: torch.Tensor, iters: int, return_iterations: bool = False):
    """Method adapter hook: an ``n``-frame window ``(B, n, 3, H, W)`` -> flows of its inner frames.

    Inner frame ``k`` (1 .. n-2) gives the forward flow of pair ``k`` and the backward flow of pair ``k-1``.
    """
    from motionflow.models.method import WindowFlows

    n = frames.shape[1]
    t = n - 2
    out = model(frames, iters=iters, all_iterations=return_iterations)
    forward = {k: out.flow[:, k - 1] for k in range(1, n - 1)}
    backward = {k - 1: out.flow[:, t + k - 1] for k in range(1, n - 1)}
    its = {k: [f[:, k - 1] for f in out.flow_predictions] for k in range(1, n - 1)} if return_iterations else {}
    return WindowFlows(forward=forward, backward=backward, iterations=its)


#: Frames per clip the video engine feeds (clips overlap by one frame). Inside a clip every window has
#: its real neighbours; only the clip's first / last frame is repeated. A clip of one window (3 / 5
#: frames) would repeat an edge frame for every clip and cost 1.5 BOF passes per pair (100 pairs: 150
#: passes, MOF 50); BOF clips of 8 frames take 115, MOF clips of 9 (three windows tile its 8 pairs) 38.
CLIP_LENGTH = {"videoflow-bof": 8, "videoflow-mof": 9}


def _spec(name: str):
    from motionflow.models.method import NetworkSpec, sliding_windows

    if name == "videoflow-bof":
        return NetworkSpec(
            name=name,
            clip_length=CLIP_LENGTH[name],
            windows=lambda t: sliding_windows(t, 3),
            run_window=run_bof_window,
            default_iters=DEFAULT_ITERS,
            correlation_volumes=2,  # centre -> next, centre -> previous
        )
    return NetworkSpec(
        name=name,
        clip_length=CLIP_LENGTH[name],
        windows=lambda t: sliding_windows(t, 5),
        run_window=run_mof_window,
        default_iters=DEFAULT_ITERS,
        correlation_volumes=6,  # forward and backward of the 3 inner frames of a 5-frame window
    )


def create_bof_method(checkpoint=None, iters: Optional[int] = None, device=None, **kw):
    """Registered method ``videoflow-bof``: TROF on 3-frame windows sliding by one frame.

    The flow of pair ``(t, t+1)`` is the centre -> next flow of the window centred on ``t``; its
    backward flow the centre -> previous flow of the window centred on ``t+1``. At the clip start the
    first frame is repeated (the window of frame 0 is ``(0, 0, 1)``), as the official evaluation
    prepends a copy of the first frame to every sequence; symmetrically the last frame is repeated for
    the backward flow of the last pair. ``checkpoint``: an official ``BOF_*.pth`` (required unless
    ``weights="random"``); further options (``precision``, ``on_demand_pixels``, ``return_iterations``,
    ``weights``, ``allow_pickle``) go to :func:`motionflow.models.method.make_network_method`.
    """
    from motionflow.models.method import make_network_method

    return make_network_method(_spec("videoflow-bof"), BOFNet, checkpoint=checkpoint, iters=iters, device=device, **kw)


def create_mof_method(checkpoint=None, iters: Optional[int] = None, device=None, **kw):
    """Registered method ``videoflow-mof``: MOF on 5-frame windows keeping the 3 inner frames' flows.

    Windows step by 3 frames so their inner frames tile the clip (first window ``(0, 0, 1, 2, 3)``: the
    first frame repeated, as in the official evaluation; the last window aligned to the clip end, its
    trailing frame repeated only to get the last backward flow); each pair takes the first window that
    produces it. ``checkpoint``: an official ``MOF_*.pth``; other options as :func:`create_bof_method`.
    """
    from motionflow.models.method import make_network_method

    return make_network_method(_spec("videoflow-mof"), MOFNet, checkpoint=checkpoint, iters=iters, device=device, **kw)
