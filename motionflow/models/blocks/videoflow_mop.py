"""VideoFlow's motion propagation (MOP) module and the MOF update block.

In MOF the TROFs of all inner frames ``t = 1..N-2`` are refined together (batched along the batch
axis, frame-minor). Each inner frame carries a 48-channel **motion hidden state**, initialised from
the learned ``init_hidden_state`` ``(1, 1, 48, 1, 1)``. At every iteration frame ``t`` gathers

* the state of frame ``t+1`` sampled at ``coords0 + forward_flow_t`` (zeros for the last inner frame),
* the state of frame ``t-1`` sampled at ``coords0 + backward_flow_t`` (zeros for the first),

(bilinear, ``align_corners=True``, zero padding) and fuses them with its own state and the motion
features; a PCBlock outputs 124 motion channels and the new 48-channel state. This is how motion
information propagates along the clip over the iterations (official
``SKMotionEncoder6_Deep_nopool_res`` of ``MOFNetStack/stack.py``).

The official encoder also constructs ``velocity_update_block`` (three 3x3 convs) that is never
called; it is not built here and its keys are accepted by name (:data:`UNUSED_MOP_KEYS`).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from motionflow.ops.correlation import bilinear_sampler

from .sk import PCBlock, SKUpdateBlock

__all__ = ["propagate_hidden_state", "MOPMotionEncoder", "MOFUpdateBlock", "UNUSED_MOP_KEYS", "HIDDEN_DIM"]

#: Width of the motion hidden state.
HIDDEN_DIM = 48

#: Keys of the official motion encoder (relative to it) that never influence the output.
UNUSED_MOP_KEYS = tuple(f"velocity_update_block.mlp.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias"))


def propagate_hidden_state(
    hidden: torch.Tensor, forward_loc: torch.Tensor, backward_loc: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather the neighbours' motion states along the current flows (MOP).

    Args:
        hidden: ``(B, T, C, H, W)`` motion states of the ``T`` inner frames.
        forward_loc: ``(B*T, 2, H, W)`` pixel coordinates ``coords0 + forward_flow`` (frame-minor batch).
        backward_loc: ``(B*T, 2, H, W)`` ``coords0 + backward_flow``.

    Returns:
        ``(from_next, from_prev)``, each ``(B*T, C, H, W)``: frame ``t+1``'s state sampled at
        ``forward_loc`` of frame ``t`` (zeros for ``t = T-1``) and frame ``t-1``'s state sampled at
        ``backward_loc`` (zeros for ``t = 0``).
    """
    b, t, c, h, w = hidden.shape
    zeros = hidden.new_zeros(b, 1, c, h, w)
    nxt = torch.cat([hidden[:, 1:], zeros], dim=1).reshape(b * t, c, h, w)
    prv = torch.cat([zeros, hidden[:, : t - 1]], dim=1).reshape(b * t, c, h, w)
    from_next = bilinear_sampler(nxt.float(), forward_loc.permute(0, 2, 3, 1))
    from_prev = bilinear_sampler(prv.float(), backward_loc.permute(0, 2, 3, 1))
    return from_next, from_prev


class MOPMotionEncoder(nn.Module):
    """MOF motion encoder with motion propagation.

    ``forward(hidden, forward_flow, backward_flow, coords0, forward_corr, backward_corr, batch)``:

    * hidden: ``(B*T, 48, H, W)`` states from the previous iteration, or None (first iteration:
      ``init_hidden_state`` broadcast);
    * forward_flow / backward_flow: ``(B*T, 2, H, W)``; coords0: ``(B*T, 2, H, W)`` pixel grid;
    * forward_corr / backward_corr: ``(B*T, corr_planes, H, W)``; batch: ``B``.

    Returns ``(motion (B*T, 128, H, W), hidden (B*T, 48, H, W))``: 124 motion channels followed by
    ``[forward_flow, backward_flow]``, and the new states.
    """

    def __init__(self, corr_planes: int = 324, k_conv: Sequence[int] = (1, 15)):
        super().__init__()
        self.convc1 = PCBlock(corr_planes, 128, k_conv)
        self.convc2 = PCBlock(256, 192, k_conv)
        self.init_hidden_state = nn.Parameter(torch.randn(1, 1, HIDDEN_DIM, 1, 1))
        self.convf1_ = nn.Conv2d(4, 128, 1, 1, 0)
        self.convf2 = PCBlock(128, 64, k_conv)
        self.conv = PCBlock(64 + 192 + 3 * HIDDEN_DIM, 128 - 4 + HIDDEN_DIM, k_conv)

    def forward(
        self,
        hidden: Optional[torch.Tensor],
        forward_flow: torch.Tensor,
        backward_flow: torch.Tensor,
        coords0: torch.Tensor,
        forward_corr: torch.Tensor,
        backward_corr: torch.Tensor,
        batch: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        bt, _, h, w = forward_flow.shape
        t = bt // batch
        if hidden is None:
            hidden = self.init_hidden_state.repeat(batch, t, 1, h, w)
        else:
            hidden = hidden.reshape(batch, t, -1, h, w)
        from_next, from_prev = propagate_hidden_state(hidden, forward_flow + coords0, backward_flow + coords0)

        cor = F.gelu(torch.cat([self.convc1(forward_corr), self.convc1(backward_corr)], dim=1))
        cor = self.convc2(cor)
        flow = torch.cat([forward_flow, backward_flow], dim=1)
        flo = self.convf2(self.convf1_(flow))
        out = self.conv(torch.cat([cor, flo, from_next, from_prev, hidden.reshape(bt, -1, h, w)], dim=1))
        motion, hidden = torch.split(out, [128 - 4, HIDDEN_DIM], dim=1)
        return torch.cat([motion, flow], dim=1), hidden


class MOFUpdateBlock(SKUpdateBlock):
    """VideoFlow MOF update block: :class:`MOPMotionEncoder`, mask logits scaled by 100.

    ``forward(net, hidden, inp, forward_corr, backward_corr, forward_flow, backward_flow, coords0,
    attention, batch) -> (net, hidden, mask (B*T, 1152, H, W), delta_flow (B*T, 4, H, W))``; mask
    channels 0:576 upsample the forward flow, 576:1152 the backward flow; ``delta_flow`` 0:2 forward,
    2:4 backward.
    """

    def __init__(self, corr_planes: int = 324):
        super().__init__(MOPMotionEncoder(corr_planes), mask_scale=100.0)

    def forward(self, net, hidden, inp, forward_corr, backward_corr, forward_flow, backward_flow, coords0, attention, batch):
        motion, hidden = self.encoder(hidden, forward_flow, backward_flow, coords0, forward_corr, backward_corr, batch)
        net, mask, delta_flow = self.refine(net, inp, motion, attention)
        return net, hidden, mask, delta_flow
