"""StreamFlow's update operator: SK motion encoder + GMA + GTR (official ``SKUpdateBlock_TAM_v3``).

One refinement iteration for the S = T - 1 flows of a SIM group, all at 1/8 resolution:

1. motion features per flow (:class:`SKMotionEncoder`): correlation ``(324) -> 256 -> 192``, flow
   ``2 -> 128 -> 64``, joined ``256 -> 126``, plus the 2 flow channels = 128 channels;
2. global (spatial) aggregation per flow, GMA: ``m + gamma * attn @ to_v(m)`` with the attention of the
   flow's context features (:class:`~motionflow.models.blocks.gma.ContextAttention`, one head, no
   positional term);
3. temporal aggregation across the S flows at every pixel (GTR, :class:`TemporalTransformer`);
4. hidden-state update per flow: SK block on ``cat([net, inp, motion, global, temporal])`` (640 -> 128,
   kernels ``[1, 7]``); StreamFlow replaces RAFT's GRU by this block, the name ``gru`` stays;
5. **joint flow head** (GTR): one SK block on the S hidden states concatenated along channels
   (``128 * S -> 2 * S``, kernels ``[1, 15]``), channels ``2i : 2i+2`` = update of flow ``i``;
6. upsampling-mask logits per flow: ``0.25 * mask(net)`` (576 channels, RAFT layout).

Batch layout: per-flow tensors are ``(B * S, C, h, w)``, b-major / flow-minor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from motionflow.models.blocks.gma import MotionAggregation
from motionflow.models.blocks.sk import PCBlock
from motionflow.models.blocks.streamflow_gtr import TemporalTransformer

__all__ = ["SKMotionEncoder", "StreamFlowUpdateBlock"]


class SKMotionEncoder(nn.Module):
    """SKFlow's motion encoder for one flow (official ``SKMotionEncoder6_Deep_nopool_res``).

    Args:
        corr_channels: channels of the correlation lookup (4 levels x 81 = 324).
        out_dim: motion-feature channels including the 2 flow channels (128).
        k_conv: kernels of the SK blocks (``[1, 15]``).
    """

    def __init__(self, corr_channels: int = 324, out_dim: int = 128, k_conv=(1, 15)) -> None:
        super().__init__()
        k_conv = list(k_conv)
        self.convc1 = PCBlock(corr_channels, 256, k_conv)
        self.convc2 = PCBlock(256, 192, k_conv)
        self.convf1 = nn.Conv2d(2, 128, 1)
        self.convf2 = PCBlock(128, 64, k_conv)
        self.conv = PCBlock(64 + 192, out_dim - 2, k_conv)

    def forward(self, flow: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        """``flow (N, 2, h, w)``, ``corr (N, 324, h, w)`` -> ``(N, out_dim, h, w)`` (last 2 = flow)."""
        cor = self.convc2(F.gelu(self.convc1(corr)))
        flo = self.convf2(self.convf1(flow))  # no activation between convf1 and convf2 (official)
        out = self.conv(torch.cat([cor, flo], dim=1))
        return torch.cat([out, flow], dim=1)


class StreamFlowUpdateBlock(nn.Module):
    """GTR update operator for the S = T - 1 flows of a SIM group.

    Args:
        steps: S, the number of flows refined jointly (3 for the released T = 4 models); it fixes
            the flow head's width (``128 * S -> 2 * S``).
        dim: hidden = context = motion channels (128).
        heads: GMA heads (1).
        k_conv: SK kernels of the motion encoder and flow head (``[1, 15]``).
        update_conv: SK kernels of the hidden-state update (``[1, 7]``).
        upsample_factor: convex upsampling factor (8).
    """

    def __init__(
        self,
        steps: int = 3,
        dim: int = 128,
        heads: int = 1,
        corr_channels: int = 324,
        k_conv=(1, 15),
        update_conv=(1, 7),
        upsample_factor: int = 8,
    ) -> None:
        super().__init__()
        self.steps = steps
        self.encoder = SKMotionEncoder(corr_channels, dim, k_conv)
        self.aggregator = MotionAggregation(dim=dim, heads=heads, dim_head=dim)
        self.gru = PCBlock(dim * 5, dim, list(update_conv))
        self.mask = nn.Sequential(
            nn.Conv2d(dim, dim * 2, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(dim * 2, upsample_factor * upsample_factor * 9, 1),
        )
        self.transformer_block = TemporalTransformer(dim)
        self.flow_head = PCBlock(dim * steps, 2 * steps, list(k_conv))

    def forward(
        self,
        net: torch.Tensor,
        inp: torch.Tensor,
        corr: torch.Tensor,
        flow: torch.Tensor,
        attention: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One iteration.

        Args:
            net: ``(B*S, 128, h, w)`` hidden states.
            inp: ``(B*S, 128, h, w)`` context features.
            corr: ``(B*S, 324, h, w)`` correlation lookups at the current estimates.
            flow: ``(B*S, 2, h, w)`` current 1/8-resolution flows.
            attention: ``(B*S, heads, h*w, h*w)`` GMA attention of the context features (or its
                :class:`~motionflow.models.blocks.gma.FactoredAttention` for large frames).

        Returns:
            ``net`` ``(B*S, 128, h, w)``, ``mask`` ``(B, S, 576, h, w)`` (already x 0.25),
            ``delta_flow`` ``(B, S, 2, h, w)``.
        """
        s = self.steps
        bs, _, h, w = net.shape
        b = bs // s
        motion = self.encoder(flow, corr)
        motion_global = self.aggregator(attention, motion)
        motion_temporal = self.transformer_block(motion, s)
        net = self.gru(torch.cat([net, inp, motion, motion_global, motion_temporal], dim=1))
        delta_flow = self.flow_head(net.reshape(b, s * net.shape[1], h, w)).reshape(b, s, 2, h, w)
        mask = (0.25 * self.mask(net)).reshape(b, s, -1, h, w)
        return net, mask, delta_flow
