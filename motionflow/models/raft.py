"""RAFT: Recurrent All-Pairs Field Transforms (Teed & Deng, ECCV 2020), two-frame optical flow.

The network, as in the paper and ``princeton-vl/RAFT`` (commit 2888e15, ``core/raft.py``):

1. **Feature encoder** ``fnet`` (instance norm) maps both frames to ``(B, 256, H/8, W/8)``; the
   **context encoder** ``cnet`` (batch norm) maps frame 1 to 256 channels, split into the initial hidden
   state ``net = tanh(cnet[:, :128])`` and the context ``inp = relu(cnet[:, 128:])``.
2. **Correlation**: the 4-level all-pairs pyramid ``<f1, f2> / sqrt(256)`` with radius-4 lookups
   (:class:`~motionflow.ops.correlation.CorrPyramid`; :class:`~motionflow.ops.correlation.OnDemandCorrPyramid`
   when ``corr_on_demand`` is set or the volume passes 1 GiB: same values, no ``(hw)^2`` volume, the
   official ``alternate_corr``).
3. **Iterative updates**: ``coords1`` starts at the pixel grid ``coords0`` (plus ``flow_init`` for a warm
   start); each of ``iters`` iterations looks up the correlation at ``coords1``, runs
   :class:`~motionflow.models.blocks.raft_update.BasicUpdateBlock` and adds its ``delta_flow``.
4. **Convex upsampling** of ``coords1 - coords0`` by 8 with the mask head's logits
   (:func:`~motionflow.ops.upsample.convex_upsample`), after every iteration.

Input frames are RGB in ``[0, 255]``, normalised inside the forward to ``[-1, 1]`` (``2 x / 255 - 1``).
Sizes must be multiples of 8 and at least 128 px (the method adapter pads).

Checkpoints: the official ``raft-{things,sintel,kitti,chairs}.pth`` are the state dict of
``nn.DataParallel(RAFT(args))`` (``module.`` keys) and load with
``create_model("raft", checkpoint=path)``. Our module names are the official ones, except that the
BatchNorm the official ``ResidualBlock`` registers twice (``norm3`` and ``downsample.1``) is registered
once; the ``norm3.*`` checkpoint entries are consumed as aliases of ``downsample.1.*``
(:data:`RAFT_ALIASES`), which is the value the official strict load leaves in the shared module
(later key in state-dict order). Only the large model (``small=False``) is implemented.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..errors import ShapeError
from ..ops.correlation import correlation_pyramid
from ..ops.upsample import convex_upsample
from ..ops.warp import coords_grid
from .blocks.raft_extractor import BasicEncoder
from .blocks.raft_update import BasicUpdateBlock
from .method import NetworkSpec, WindowFlows, make_network_method, pairwise_windows

_BN_FIELDS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")

#: ``{alias: canonical}``: the context encoder's stride-2 blocks register one BatchNorm as ``norm3`` and
#: ``downsample.1``; the official load leaves the later key's (``downsample.1``) value in it.
RAFT_ALIASES: dict[str, str] = {
    f"cnet.{layer}.0.norm3.{f}": f"cnet.{layer}.0.downsample.1.{f}"
    for layer in ("layer2", "layer3")
    for f in _BN_FIELDS
}

#: Default refinement iterations of the method: 32, as the official Sintel evaluation and submission
#: (``evaluate.py``: ``validate_sintel`` / ``create_sintel_submission`` use 32, KITTI uses 24; training 12).
DEFAULT_ITERS = 32


class RAFT(nn.Module):
    """RAFT (large), ``forward(image1, image2, iters, flow_init, test_mode)`` as the official model.

    Args:
        corr_levels: correlation pyramid levels (4).
        corr_radius: lookup radius (4): ``corr_levels * (2r+1)^2 = 324`` channels.
        dropout: encoder dropout (official evaluation: 0).
        corr_on_demand: ``True``: the memory-bounded correlation; ``False``: the all-pairs volume;
            ``None`` (default): memory-bounded when the volume would pass
            :data:`~motionflow.ops.correlation.ALL_PAIRS_MAX_BYTES` (the method adapter sets it per call).

    Attributes:
        checkpoint_aliases: :data:`RAFT_ALIASES` (read by :func:`motionflow.models.load_official_checkpoint`).
        checkpoint_unused_keys: none: every entry of the official files is a key of this module or an alias
            (the 17 ``num_batches_tracked`` buffers are loaded although eval mode never reads them).
    """

    checkpoint_aliases = RAFT_ALIASES
    checkpoint_unused_keys: tuple = ()

    hidden_dim = 128
    context_dim = 128

    def __init__(
        self, corr_levels: int = 4, corr_radius: int = 4, dropout: float = 0.0, corr_on_demand: Optional[bool] = None
    ):
        super().__init__()
        self.corr_levels = corr_levels
        self.corr_radius = corr_radius
        self.corr_on_demand = corr_on_demand
        self.fnet = BasicEncoder(output_dim=256, norm_fn="instance", dropout=dropout)
        self.cnet = BasicEncoder(output_dim=self.hidden_dim + self.context_dim, norm_fn="batch", dropout=dropout)
        self.update_block = BasicUpdateBlock(corr_levels, corr_radius, hidden_dim=self.hidden_dim)

    def freeze_bn(self) -> None:
        """Keep every BatchNorm in eval mode (RAFT fine-tuning freezes the context encoder's statistics)."""
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()

    def forward(
        self,
        image1: torch.Tensor,
        image2: torch.Tensor,
        iters: int = 12,
        flow_init: Optional[torch.Tensor] = None,
        upsample: bool = True,
        test_mode: bool = False,
    ):
        """Flow from ``image1`` to ``image2``.

        Args:
            image1, image2: ``(B, 3, H, W)`` RGB in [0, 255], H and W multiples of 8 (>= 128).
            iters: refinement iterations.
            flow_init: ``(B, 2, H/8, W/8)`` warm start in 1/8-resolution pixels, added to the initial
                target coordinates.
            upsample: kept for signature compatibility (the official forward always upsamples).
            test_mode: return ``(flow_low, flow_up)`` instead of the per-iteration list.

        Returns:
            ``test_mode=False``: list of ``iters`` tensors ``(B, 2, H, W)`` (full-resolution flow after
            each iteration). ``test_mode=True``: ``flow_low`` ``(B, 2, H/8, W/8)`` (1/8-res pixels) and
            ``flow_up`` ``(B, 2, H, W)`` (= the last list entry).
        """
        _check_pair(image1, image2)
        image1 = (2 * (image1 / 255.0) - 1.0).contiguous()
        image2 = (2 * (image2 / 255.0) - 1.0).contiguous()

        fmap1, fmap2 = self.fnet([image1, image2])
        # as the official code, the correlation is built and read in float32 even under autocast
        # (fp16 dot products of 256-d features lose precision; the official autocast covers only the
        # encoders and the update block)
        float32 = torch.autocast(image1.device.type, enabled=False)
        with float32:
            corr_fn = correlation_pyramid(
                fmap1.float(), fmap2.float(), self.corr_levels, self.corr_radius, on_demand=self.corr_on_demand
            )

        cnet = self.cnet(image1)
        net, inp = torch.split(cnet, [self.hidden_dim, self.context_dim], dim=1)
        net = torch.tanh(net)
        inp = torch.relu(inp)

        b, _, h, w = image1.shape
        coords0 = coords_grid(b, h // 8, w // 8, device=image1.device)
        coords1 = coords0.clone()
        if flow_init is not None:
            coords1 = coords1 + flow_init

        flow_predictions = []
        flow_up = None
        for _ in range(iters):
            coords1 = coords1.detach()
            with float32:
                corr = corr_fn(coords1)
            flow = coords1 - coords0
            net, up_mask, delta_flow = self.update_block(net, inp, corr, flow)
            coords1 = coords1 + delta_flow.float()
            with float32:
                flow_up = convex_upsample(coords1 - coords0, up_mask.float(), factor=8)
            flow_predictions.append(flow_up)

        if test_mode:
            return coords1 - coords0, flow_up
        return flow_predictions


def _check_pair(image1: torch.Tensor, image2: torch.Tensor) -> None:
    """``image1``, ``image2``: two ``(B, 3, H, W)`` tensors of one shape, ``H``, ``W`` multiples of 8."""
    for name, x in (("image1", image1), ("image2", image2)):
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
            found = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ShapeError(f"RAFT {name}: expected a tensor (B, 3, H, W) in [0, 255], found {found}")
    if image1.shape != image2.shape:
        raise ShapeError(
            f"RAFT image2: expected the shape of image1 {tuple(image1.shape)}, found {tuple(image2.shape)}"
        )
    h, w = image1.shape[-2:]
    if h % 8 or w % 8:
        raise ShapeError(f"RAFT images: H and W must be multiples of 8 (pad first), found {h}x{w}")


def build_raft(**options) -> RAFT:
    """The official large RAFT (``small=False``, ``dropout=0``, 4 levels, radius 4)."""
    return RAFT(**options)


# ---------------------------------------------------------------------------------------- as a method
def _run_pair(model: RAFT, frames: torch.Tensor, iters: int, return_iterations: bool) -> WindowFlows:
    """``frames`` ``(B, 2, 3, H, W)`` -> the forward flow of the pair (and its iterations)."""
    preds = model(frames[:, 0], frames[:, 1], iters=iters, test_mode=False)
    return WindowFlows(
        forward={0: preds[-1]},
        iterations={0: list(preds)} if return_iterations else {},
    )


RAFT_SPEC = NetworkSpec(
    name="raft",
    clip_length=2,
    windows=pairwise_windows,
    run_window=_run_pair,
    default_iters=DEFAULT_ITERS,
    default_precision="fp32",  # the official evaluation default (--mixed_precision is opt-in)
)


def create_raft_method(checkpoint=None, iters: Optional[int] = None, device=None, weights: Optional[str] = None, **options):
    """Registry factory of ``raft``: RAFT with its official checkpoint as an optical-flow method.

    Args:
        checkpoint: ``raft-things.pth``-style file (required unless ``weights="random"``).
        iters: refinement iterations (default :data:`DEFAULT_ITERS` = 32).
        device: ``cpu`` / ``cuda`` / None (CUDA if available).
        weights: ``"random"`` for the random initialisation (benchmarks, tests).
        options: ``precision`` (``fp32`` default, ``fp16``/``bf16`` autocast on CUDA), ``on_demand_pixels``,
            ``return_iterations``, ``allow_pickle``.

    Raises:
        CheckpointError: without a checkpoint (saying where the official weights are published), or for a
            checkpoint that does not match.
    """
    return make_network_method(
        RAFT_SPEC, build_raft, checkpoint=checkpoint, weights=weights, iters=iters, device=device, **options
    )
