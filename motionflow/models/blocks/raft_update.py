"""RAFT's recurrent update operator (Teed & Deng, ECCV 2020, Sec. 3.3).

Per iteration, at 1/8 resolution (``h = H/8``, ``w = W/8``):

* ``BasicMotionEncoder``: correlation features ``(B, L(2r+1)^2, h, w)`` and the current flow
  ``(B, 2, h, w)`` -> motion features ``(B, 128, h, w)`` (126 learned channels + the flow itself);
* ``SepConvGRU``: a convolutional GRU whose gates are separable, first 1x5 (horizontal) then 5x1
  (vertical), updating the hidden state ``(B, 128, h, w)`` from ``x = [context, motion]``;
* ``FlowHead``: hidden state -> flow update ``(B, 2, h, w)``;
* the mask head: hidden state -> ``0.25 *`` convex-upsampling logits ``(B, 9 * 8 * 8, h, w)``
  (the 0.25 "balances gradients", official comment).

Module names follow ``princeton-vl/RAFT core/update.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FlowHead(nn.Module):
    """``(B, input_dim, h, w) -> (B, 2, h, w)``: conv3x3, ReLU, conv3x3."""

    def __init__(self, input_dim: int = 128, hidden_dim: int = 256):
        super().__init__()
        self.conv1 = nn.Conv2d(input_dim, hidden_dim, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden_dim, 2, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu(self.conv1(x)))


def gru_step(h: torch.Tensor, x: torch.Tensor, convz: nn.Module, convr: nn.Module, convq: nn.Module) -> torch.Tensor:
    """One ConvGRU update: ``z = sig(Wz[h,x]); r = sig(Wr[h,x]); q = tanh(Wq[r*h, x]); h' = (1-z) h + z q``."""
    hx = torch.cat([h, x], dim=1)
    z = torch.sigmoid(convz(hx))
    r = torch.sigmoid(convr(hx))
    q = torch.tanh(convq(torch.cat([r * h, x], dim=1)))
    return (1 - z) * h + z * q


class SepConvGRU(nn.Module):
    """Separable ConvGRU: a 1x5 GRU step followed by a 5x1 GRU step.

    ``h`` ``(B, hidden_dim, h, w)``, ``x`` ``(B, input_dim, h, w)`` -> new ``h``.
    """

    def __init__(self, hidden_dim: int = 128, input_dim: int = 192 + 128):
        super().__init__()
        c = hidden_dim + input_dim
        self.convz1 = nn.Conv2d(c, hidden_dim, (1, 5), padding=(0, 2))
        self.convr1 = nn.Conv2d(c, hidden_dim, (1, 5), padding=(0, 2))
        self.convq1 = nn.Conv2d(c, hidden_dim, (1, 5), padding=(0, 2))
        self.convz2 = nn.Conv2d(c, hidden_dim, (5, 1), padding=(2, 0))
        self.convr2 = nn.Conv2d(c, hidden_dim, (5, 1), padding=(2, 0))
        self.convq2 = nn.Conv2d(c, hidden_dim, (5, 1), padding=(2, 0))

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        h = gru_step(h, x, self.convz1, self.convr1, self.convq1)  # horizontal
        return gru_step(h, x, self.convz2, self.convr2, self.convq2)  # vertical


class BasicMotionEncoder(nn.Module):
    """``(flow (B, 2, h, w), corr (B, corr_levels*(2r+1)^2, h, w)) -> (B, 128, h, w)``.

    ``cor = relu(convc2(relu(convc1(corr))))`` (192 ch), ``flo = relu(convf2(relu(convf1(flow))))``
    (64 ch), ``out = relu(conv([cor, flo]))`` (126 ch), returned as ``[out, flow]``.
    """

    def __init__(self, corr_levels: int = 4, corr_radius: int = 4):
        super().__init__()
        cor_planes = corr_levels * (2 * corr_radius + 1) ** 2
        self.convc1 = nn.Conv2d(cor_planes, 256, 1, padding=0)
        self.convc2 = nn.Conv2d(256, 192, 3, padding=1)
        self.convf1 = nn.Conv2d(2, 128, 7, padding=3)
        self.convf2 = nn.Conv2d(128, 64, 3, padding=1)
        self.conv = nn.Conv2d(64 + 192, 128 - 2, 3, padding=1)

    def forward(self, flow: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        cor = F.relu(self.convc2(F.relu(self.convc1(corr))))
        flo = F.relu(self.convf2(F.relu(self.convf1(flow))))
        out = F.relu(self.conv(torch.cat([cor, flo], dim=1)))
        return torch.cat([out, flow], dim=1)


class BasicUpdateBlock(nn.Module):
    """One RAFT refinement step.

    ``forward(net, inp, corr, flow)``: hidden state ``net`` ``(B, hidden_dim, h, w)``, context ``inp``
    ``(B, 128, h, w)``, correlation ``(B, L(2r+1)^2, h, w)``, flow ``(B, 2, h, w)`` -> ``(net, mask,
    delta_flow)`` with ``mask`` ``(B, 576, h, w)`` (already x 0.25) and ``delta_flow`` ``(B, 2, h, w)``.
    """

    def __init__(self, corr_levels: int = 4, corr_radius: int = 4, hidden_dim: int = 128, mask_size: int = 8):
        super().__init__()
        self.encoder = BasicMotionEncoder(corr_levels, corr_radius)
        self.gru = SepConvGRU(hidden_dim=hidden_dim, input_dim=128 + hidden_dim)
        self.flow_head = FlowHead(hidden_dim, hidden_dim=256)
        self.mask = nn.Sequential(
            nn.Conv2d(128, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, mask_size**2 * 9, 1, padding=0),
        )

    def forward(self, net, inp, corr, flow):
        motion_features = self.encoder(flow, corr)
        net = self.gru(net, torch.cat([inp, motion_features], dim=1))
        delta_flow = self.flow_head(net)
        mask = 0.25 * self.mask(net)
        return net, mask, delta_flow
