"""Super-kernel (SK) update blocks of SKFlow (Sun et al., NeurIPS 2022), as used by VideoFlow.

The building block is the **PCBlock** ("partial-kernel" block, official class name
``PCBlock4_Deep_nopool_res``): a residual stack of a 1.5x point-wise FFN, depthwise convolutions with
large kernels (``k_conv``, e.g. 1x1 and 15x15) and a point-wise conv, each followed by GELU, then an
output FFN that changes the width:

    ``x = gelu(x + ffn1(x)); for conv in conv_list: x = gelu(x + conv(x)); x = gelu(x + pw(x)); return ffn2(x)``

The update operator built from it (:class:`SKUpdateBlock`) is not a GRU although its hidden-state
block keeps the name ``gru``: it maps ``[net, context, motion, aggregated motion]`` to the new hidden
state with a PCBlock (kernels ``[1, 7]``), predicts the flow update with a PCBlock ``flow_head`` and the
convex-upsampling logits with a small conv ``mask`` head.

:class:`TROFMotionEncoder` is VideoFlow BOF's bidirectional motion encoder (official
``SKMotionEncoder6_Deep_nopool_res`` of ``BOFNet/sk2.py``). State-dict names are the official ones.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .gma import MotionAggregation

__all__ = ["PCBlock", "TROFMotionEncoder", "SKUpdateBlock", "TROFUpdateBlock"]


class PCBlock(nn.Module):
    """SKFlow's large-kernel residual block (official ``PCBlock4_Deep_nopool_res``).

    Args:
        c_in: input channels (kept through the residual part).
        c_out: output channels of the final FFN.
        k_conv: kernel sizes of the depthwise convs (``padding = k // 2``).

    ``forward(x (B, c_in, H, W)) -> (B, c_out, H, W)``.
    """

    def __init__(self, c_in: int, c_out: int, k_conv: Sequence[int]):
        super().__init__()
        hidden = int(1.5 * c_in)
        self.conv_list = nn.ModuleList(nn.Conv2d(c_in, c_in, k, stride=1, padding=k // 2, groups=c_in) for k in k_conv)
        self.ffn1 = nn.Sequential(nn.Conv2d(c_in, hidden, 1), nn.GELU(), nn.Conv2d(hidden, c_in, 1))
        self.pw = nn.Conv2d(c_in, c_in, 1)
        self.ffn2 = nn.Sequential(nn.Conv2d(c_in, hidden, 1), nn.GELU(), nn.Conv2d(hidden, c_out, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(x + self.ffn1(x))
        for conv in self.conv_list:
            x = F.gelu(x + conv(x))
        x = F.gelu(x + self.pw(x))
        return self.ffn2(x)


class TROFMotionEncoder(nn.Module):
    """Motion encoder of VideoFlow's TROF (BOF): both directions of the centre frame at once.

    ``convc1`` (shared between the two correlation volumes) encodes each ``corr_planes``-channel
    volume to 128 channels; the two are concatenated (next-frame direction first), GELU, ``convc2``
    -> 192. ``convf1_`` (1x1) and ``convf2`` encode the 4 flow channels to 64. ``conv`` fuses them to
    ``128 - 4`` channels, and the flows are appended.

    ``forward(flow (B, 4, H, W), corr (B, 2*corr_planes, H, W)) -> (B, 128, H, W)``; ``flow`` =
    ``[flow c->c+1, flow c->c-1]``, ``corr`` = ``[corr c->c+1, corr c->c-1]``.
    """

    def __init__(self, corr_planes: int = 324, k_conv: Sequence[int] = (1, 15)):
        super().__init__()
        self.corr_planes = corr_planes
        self.convc1 = PCBlock(corr_planes, 128, k_conv)
        self.convc2 = PCBlock(256, 192, k_conv)
        self.convf1_ = nn.Conv2d(4, 128, 1, 1, 0)
        self.convf2 = PCBlock(128, 64, k_conv)
        self.conv = PCBlock(64 + 192, 128 - 4, k_conv)

    def encode_correlation(self, corr_next: torch.Tensor, corr_prev: torch.Tensor) -> torch.Tensor:
        """``convc2(gelu([convc1(corr_next), convc1(corr_prev)]))``: ``(B, 192, H, W)``."""
        cor = F.gelu(torch.cat([self.convc1(corr_next), self.convc1(corr_prev)], dim=1))
        return self.convc2(cor)

    def encode_flow(self, flow: torch.Tensor) -> torch.Tensor:
        """``convf2(convf1_(flow))``: ``(B, 4, H, W) -> (B, 64, H, W)``."""
        return self.convf2(self.convf1_(flow))

    def forward(self, flow: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        corr_next, corr_prev = torch.split(corr, [self.corr_planes, self.corr_planes], dim=1)
        out = self.conv(torch.cat([self.encode_correlation(corr_next, corr_prev), self.encode_flow(flow)], dim=1))
        return torch.cat([out, flow], dim=1)


class SKUpdateBlock(nn.Module):
    """SK update operator shared by VideoFlow BOF and MOF (official ``SKUpdateBlock6_Deep_nopoolres_AllDecoder2``).

    Args:
        encoder: the motion encoder module (stored as ``encoder``; called by subclasses).
        hidden_dim, context_dim, motion_dim: widths of ``net``, ``inp`` and the motion features.
        flow_channels: channels of ``delta_flow`` (4 = two directions).
        mask_channels: channels of the upsampling logits (``2 * 9 * 8 * 8`` = 1152 for two directions).
        mask_scale: multiplier of the mask logits (0.25 in BOF, 100 in MOF).
        k_conv: depthwise kernels of ``flow_head``; k_update: those of ``gru``.
    """

    def __init__(
        self,
        encoder: nn.Module,
        hidden_dim: int = 128,
        context_dim: int = 128,
        motion_dim: int = 128,
        flow_channels: int = 4,
        mask_channels: int = 2 * 9 * 64,
        mask_scale: float = 0.25,
        k_conv: Sequence[int] = (1, 15),
        k_update: Sequence[int] = (1, 7),
    ):
        super().__init__()
        self.mask_scale = mask_scale
        self.encoder = encoder
        self.gru = PCBlock(hidden_dim + context_dim + 2 * motion_dim, hidden_dim, k_update)
        self.flow_head = PCBlock(hidden_dim, flow_channels, k_conv)
        self.mask = nn.Sequential(
            nn.Conv2d(hidden_dim, 256, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(256, mask_channels, 1)
        )
        self.aggregator = MotionAggregation(dim=motion_dim, heads=1, dim_head=motion_dim)

    def refine(
        self, net: torch.Tensor, inp: torch.Tensor, motion: torch.Tensor, attention: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One refinement step from encoded motion features.

        Args:
            net: ``(B, hidden_dim, H, W)`` hidden state; inp: ``(B, context_dim, H, W)`` context.
            motion: ``(B, motion_dim, H, W)`` motion features; attention: ``(B, 1, H*W, H*W)`` GMA attention
                (or its :class:`~motionflow.models.blocks.gma.FactoredAttention` for large frames).

        Returns:
            ``(net, mask, delta_flow)``: new hidden state, ``mask_scale``-scaled upsampling logits
            ``(B, mask_channels, H, W)`` and ``(B, flow_channels, H, W)`` flow update.
        """
        aggregated = self.aggregator(attention, motion)
        net = self.gru(torch.cat([net, inp, motion, aggregated], dim=1))
        delta_flow = self.flow_head(net)
        mask = self.mask_scale * self.mask(net)
        return net, mask, delta_flow


class TROFUpdateBlock(SKUpdateBlock):
    """VideoFlow BOF update block: :class:`TROFMotionEncoder`, mask logits scaled by 0.25.

    ``forward(net, inp, corr (B, 648, H, W), flow (B, 4, H, W), attention) -> (net, mask (B, 1152, H, W),
    delta_flow (B, 4, H, W))``. ``delta_flow`` channels 0:2 update the centre->next flow, 2:4 the
    centre->previous flow; the mask is split the other way round (0:576 previous, 576:1152 next), as in
    the official network.
    """

    def __init__(self, corr_planes: int = 324):
        super().__init__(TROFMotionEncoder(corr_planes), mask_scale=0.25)

    def forward(self, net, inp, corr, flow, attention):
        return self.refine(net, inp, self.encoder(flow, corr), attention)
