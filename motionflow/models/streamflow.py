"""StreamFlow (Sun et al., "StreamFlow: Streamlined Multi-Frame Optical Flow Estimation for Video
Sequences", NeurIPS 2024; official code ``littlespray/StreamFlow``, class ``SKFlow_MF8``).

Three ideas on top of a Twins-SKFlow/GMA backbone:

* **SIM** (streamlined in-batch multi-frame): one forward pass takes T = 4 frames and returns the
  T - 1 = 3 forward flows ``t -> t+1`` of all consecutive pairs. ``fnet`` encodes all T frames,
  ``cnet`` the first T - 1; one RAFT correlation pyramid (4 levels, radius 4) per pair; all pairs are
  refined together in one batch. A video is cut into groups of T frames overlapping by one, the last
  aligned to the end (:func:`motionflow.models.method.overlapping_groups`, paper Alg. 2).
* **ISC** (integrative spatio-temporal coherence, :mod:`~motionflow.models.blocks.streamflow_isc`):
  the Twins encoder sees the frames stacked along height, so its attention mixes frames, at zero
  parameter cost.
* **GTR** (global temporal regressor, :mod:`~motionflow.models.blocks.streamflow_gtr` and
  :mod:`~motionflow.models.blocks.streamflow_update`): a zero-initialised per-pixel temporal
  transformer over the T - 1 motion features and one flow head over the concatenated hidden states.

Module names and the state-dict layout are the official ones (``fnet``, ``cnet``, ``update_block``,
``att``), so the released ``{'model': {'module.<key>': tensor}}`` files load strictly through
:func:`motionflow.models.load_official_checkpoint`; the four ``{f,c}net.svt.norm.*`` entries they
carry are never used and are accepted by name.

Precision: the network follows the caller's autocast context (the official forward autocasts the
encoders and the update block and keeps the correlation and the upsampling in float32; so does this
one). The registered method autocasts to fp16 on CUDA like the official ``evaluate_mf.py`` default;
on CPU everything is float32, which is what the parity fixtures pin down.

Memory (issue 21): above a size budget the Twins attention and MLPs, GMA and the correlation take
memory-bounded paths that compute the same function (:mod:`motionflow.models.blocks.memory`); a
1080x1920 group of 4 frames needs 2.3 GiB on the CPU instead of 127 GiB.

Deviations from the official forward: explicit-softmax attention in the Twins blocks below the memory
budget instead of timm 0.9.16's fused kernel (the SPEC measures 2.3e-5 px between the two; above the
budget the fused kernel runs, as in the official code), GMA's attention applied from its factors with the
fused kernel above the budget (float rounding apart the same), a single ``(B*(T-1))``-batched
correlation pyramid instead of one per pair (same values), the input is one ``(B, T, 3, H, W)`` tensor
instead of a list of T frames, and inputs smaller than 128 px per side or not a multiple of 8 are
rejected with a ShapeError (the official network returns NaN below 128 px; the method pads them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from motionflow.errors import ShapeError
from motionflow.models.blocks.gma import ContextAttention
from motionflow.models.blocks.streamflow_isc import ISCTwinsEncoder
from motionflow.models.blocks.streamflow_update import StreamFlowUpdateBlock
from motionflow.ops.correlation import correlation_pyramid
from motionflow.ops.upsample import convex_upsample
from motionflow.ops.warp import coords_grid

__all__ = [
    "StreamFlow",
    "StreamFlowOutput",
    "build_streamflow",
    "UNUSED_KEYS",
    "DEFAULT_ITERS",
    "run_streamflow_window",
    "streamflow_spec",
    "create_streamflow_method",
]

#: Evaluation iterations of the official scripts (``scripts/infer.sh``, ``demo.py``); training uses 12.
DEFAULT_ITERS = 15
#: Entries of the official state dict that no output depends on (Twins' final LayerNorm).
UNUSED_KEYS = ("fnet.svt.norm.weight", "fnet.svt.norm.bias", "cnet.svt.norm.weight", "cnet.svt.norm.bias")
#: Smallest side the 4-level correlation pyramid supports (the coarsest level must be >= 2 px).
MIN_SIDE = 128


@dataclass
class StreamFlowOutput:
    """What :meth:`StreamFlow.forward` returns.

    Attributes:
        flow: ``(B, T-1, 2, H, W)`` final forward flows, pair ``i`` = frame ``i`` -> ``i+1`` (x, y), px.
        flow_low: ``(B, T-1, 2, H/8, W/8)`` final flows at 1/8 resolution (1/8-resolution px), the
            warm start of a following group.
        predictions: one ``(B, T-1, 2, H, W)`` tensor per iteration (index 0 = after iteration 1) when
            requested with ``all_iterations=True``, else empty.
    """

    flow: torch.Tensor
    flow_low: torch.Tensor
    predictions: list = field(default_factory=list)


class StreamFlow(nn.Module):
    """StreamFlow with T = 4 (the released models).

    Args:
        frames: T, frames per SIM group (4 for all released checkpoints; the flow head's width is
            tied to it).
        iters: default number of refinement iterations (15 as the official evaluation).
        corr_levels, corr_radius: correlation pyramid (4, 4).
        corr_on_demand: ``True``: the memory-bounded correlation (same lookup, no ``(hw)^2`` volume);
            ``False``: the all-pairs volumes; ``None`` (default): memory-bounded when the volumes would
            pass :data:`~motionflow.ops.correlation.ALL_PAIRS_MAX_BYTES` (the method adapter sets it per call).
    """

    checkpoint_unused_keys = UNUSED_KEYS

    def __init__(
        self,
        frames: int = 4,
        iters: int = DEFAULT_ITERS,
        corr_levels: int = 4,
        corr_radius: int = 4,
        corr_on_demand: Optional[bool] = None,
    ):
        super().__init__()
        if frames < 2:
            raise ShapeError(f"frames: StreamFlow needs at least 2 frames per group, found {frames}")
        self.frames = frames
        self.iters = iters
        self.corr_levels = corr_levels
        self.corr_radius = corr_radius
        self.corr_on_demand = corr_on_demand
        self.hidden_dim = self.context_dim = 128
        self.fnet = ISCTwinsEncoder()
        self.cnet = ISCTwinsEncoder()
        self.update_block = StreamFlowUpdateBlock(
            steps=frames - 1, dim=128, heads=1, corr_channels=corr_levels * (2 * corr_radius + 1) ** 2
        )
        self.att = ContextAttention(dim=128, heads=1, dim_head=128)

    def checkpoint_key_map(self) -> dict:
        """``{official key (no module.): model key}``: the identity, our module names are the official ones."""
        return {k: k for k in self.state_dict()}

    def _check_inputs(self, frames: torch.Tensor, flow_init: Optional[torch.Tensor]) -> None:
        if not isinstance(frames, torch.Tensor) or frames.ndim != 5 or frames.shape[2] != 3:
            found = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
            raise ShapeError(f"frames: expected a tensor (B, T={self.frames}, 3, H, W) in [0, 255], found {found}")
        b, t, _, h, w = frames.shape
        if t != self.frames:
            raise ShapeError(f"frames: StreamFlow was built for T={self.frames} frames per group, found T={t}")
        if h % 8 or w % 8:
            raise ShapeError(f"frames: H and W must be multiples of 8 (pad first), found {h} x {w}")
        if h < MIN_SIDE or w < MIN_SIDE:
            raise ShapeError(
                f"frames: H and W must be >= {MIN_SIDE} (the official correlation pyramid returns NaN below; "
                f"pad first), found {h} x {w}"
            )
        if flow_init is not None:
            want = (b, t - 1, 2, h // 8, w // 8)
            if not isinstance(flow_init, torch.Tensor) or tuple(flow_init.shape) != want:
                found = tuple(flow_init.shape) if isinstance(flow_init, torch.Tensor) else type(flow_init).__name__
                raise ShapeError(f"flow_init: expected shape {want} (1/8-resolution flows per pair), found {found}")

    def forward(
        self,
        frames: torch.Tensor,
        iters: Optional[int] = None,
        flow_init: Optional[torch.Tensor] = None,
        all_iterations: bool = False,
    ) -> StreamFlowOutput:
        """Estimate the T-1 forward flows of one SIM group.

        Args:
            frames: ``(B, T, 3, H, W)`` RGB in [0, 255], H and W multiples of 8 and >= 128.
            iters: refinement iterations (default ``self.iters``).
            flow_init: ``(B, T-1, 2, H/8, W/8)`` initial flows at 1/8 resolution (warm start), added
                to each pair's initial target coordinates; None = zero.
            all_iterations: also return the upsampled flows of every iteration.

        Returns:
            :class:`StreamFlowOutput`.
        """
        self._check_inputs(frames, flow_init)
        iters = self.iters if iters is None else int(iters)
        if iters < 1:
            raise ShapeError(f"iters: expected at least 1 refinement iteration, found {iters}")
        b, t, _, height, width = frames.shape
        s = t - 1
        images = 2 * (frames / 255.0) - 1.0

        fmaps = self.fnet(images).float()  # (B, T, 256, h, w), all frames stacked (ISC)
        context = self.cnet(images[:, :-1])  # (B, S, 256, h, w), the first T-1 frames stacked
        h, w = fmaps.shape[-2:]
        net, inp = torch.split(context, [self.hidden_dim, self.context_dim], dim=2)
        net = torch.tanh(net.flatten(0, 1))  # (B*S, 128, h, w), b-major / pair-minor
        inp = torch.relu(inp.flatten(0, 1))
        attention = self.att(inp)  # (B*S, 1, h*w, h*w), or its factors for large frames

        # as the official forward, the correlation and the upsampling run outside any autocast (float32)
        fp32 = torch.autocast(frames.device.type, enabled=False)
        with fp32:
            corr_fn = correlation_pyramid(
                fmaps[:, :-1].flatten(0, 1),
                fmaps[:, 1:].flatten(0, 1),
                self.corr_levels,
                self.corr_radius,
                on_demand=self.corr_on_demand,
            )  # pair i: fmap_i against fmap_{i+1}
        coords0 = coords_grid(b * s, h, w, device=frames.device)
        coords1 = coords0.clone()
        if flow_init is not None:
            coords1 = coords1 + flow_init.flatten(0, 1).float()

        predictions = []
        up = None
        for it in range(iters):
            coords1 = coords1.detach()  # as RAFT and the official StreamFlow: no gradient across iterations
            with fp32:
                corr = corr_fn(coords1)
            flow = coords1 - coords0
            net, mask, delta_flow = self.update_block(net, inp, corr, flow, attention)
            coords1 = coords1 + delta_flow.flatten(0, 1).float()
            if all_iterations or it == iters - 1:
                with fp32:
                    up = convex_upsample(coords1 - coords0, mask.flatten(0, 1), 8)
                up = up.reshape(b, s, 2, height, width)
                if all_iterations:
                    predictions.append(up)
        flow_low = (coords1 - coords0).reshape(b, s, 2, h, w)
        return StreamFlowOutput(flow=up, flow_low=flow_low, predictions=predictions)


def build_streamflow(checkpoint=None, frames: int = 4, iters: int = DEFAULT_ITERS, allow_pickle: bool = False, **kw):
    """Build :class:`StreamFlow` and, if given, load an official checkpoint strictly.

    Args:
        checkpoint: path or state dict in the official layout (``{'model': {'module.<key>': ...}}``,
            or flat / unprefixed), or None for the random initialisation (GTR zero-initialised).
        frames, iters: see :class:`StreamFlow`.

    Returns:
        The network (eval mode when a checkpoint was loaded).

    Raises:
        CheckpointError: the checkpoint does not match (every missing / unexpected / mis-shaped key).
    """
    model = StreamFlow(frames=frames, iters=iters, **kw)
    if checkpoint is not None:
        from motionflow.models import load_official_checkpoint

        load_official_checkpoint(model, checkpoint, allow_pickle=allow_pickle)
        model.eval()
    return model


# ---------------------------------------------------------------------------------------- as a method
def run_streamflow_window(model: StreamFlow, frames: torch.Tensor, iters: int, return_iterations: bool):
    """One SIM group ``(B, T, 3, H, W)`` (padded) -> the forward flows of its T-1 pairs (and iterations)."""
    from motionflow.models.method import WindowFlows

    out = model(frames, iters=iters, all_iterations=return_iterations)
    s = frames.shape[1] - 1
    forward = {p: out.flow[:, p] for p in range(s)}
    its = {p: [f[:, p] for f in out.predictions] for p in range(s)} if return_iterations else {}
    return WindowFlows(forward=forward, iterations=its)


def streamflow_spec(frames: int = 4):
    """The :class:`~motionflow.models.method.NetworkSpec` of StreamFlow: SIM groups of ``frames``."""
    from motionflow.models.method import NetworkSpec, overlapping_groups

    return NetworkSpec(
        name="streamflow",
        clip_length=frames,
        windows=lambda t: overlapping_groups(t, frames, 1),
        run_window=run_streamflow_window,
        default_iters=DEFAULT_ITERS,
        default_precision="fp16",  # evaluate_mf.py's default (--mixed_precision on); CUDA only, CPU is fp32
        correlation_volumes=frames - 1,  # one per pair of the SIM group
    )


def create_streamflow_method(checkpoint=None, iters: Optional[int] = None, device=None, **kw):
    """Registered method ``streamflow``: StreamFlow on SIM groups of 4 frames.

    A clip of N frames is cut into groups of 4 frames overlapping by one frame, the last group aligned
    to the end of the clip; every pair takes the flow of the first group that contains it (official
    ``demo.py`` / paper Alg. 2), so N frames cost ``ceil((N-1)/3)`` forward passes. Groups start cold
    (zero flow), as the official evaluation and demo do (the optional ``*_warmup`` submission script of
    the official repository is not reproduced). A clip of fewer than 4 frames is filled by repeating its
    last frame (StreamFlow cannot run on fewer frames; those flows are dropped).

    Args:
        checkpoint: an official ``streamflow-{things,sintel,kitti,spring}.pth`` file (``{'model': ...}``
            with ``module.`` keys) or a state dict; required unless ``weights="random"``.
        iters: refinement iterations (default 15, the official evaluation).
        device: ``cpu`` / ``cuda`` / None (CUDA if available).
        kw: ``precision`` (default ``fp16`` autocast on CUDA, as the official evaluation; CPU runs
            float32), ``on_demand_pixels``, ``return_iterations``, ``weights``, ``allow_pickle``.

    Raises:
        CheckpointError: without a checkpoint (saying where the official weights are published), or for a
            checkpoint that does not match.
    """
    from motionflow.models.method import make_network_method

    return make_network_method(
        streamflow_spec(), StreamFlow, checkpoint=checkpoint, iters=iters, device=device, **kw
    )
