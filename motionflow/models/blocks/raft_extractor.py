"""RAFT's convolutional feature and context encoders (Teed & Deng, ECCV 2020, Sec. 3.1).

``BasicEncoder``: a 7x7 stride-2 convolution, three stages of two residual blocks (64, 96, 128
channels; stride 1, 2, 2) and a 1x1 output convolution, i.e. ``(B, 3, H, W) -> (B, D, H/8, W/8)``.
RAFT uses it twice: the feature encoder ``fnet`` (instance norm, D = 256) for both frames and the
context encoder ``cnet`` (batch norm, D = 256 = 128 hidden + 128 context) for frame 1.

Module names follow ``princeton-vl/RAFT core/extractor.py`` so official checkpoints load by name.
One deliberate layout difference: the official ``ResidualBlock`` registers its shortcut normalisation
twice, as ``norm3`` and as ``downsample.1`` (the same module object). We register it once, inside
``downsample``; the checkpoint loader consumes the ``norm3.*`` entries as aliases (see
``RAFT_ALIASES`` in :mod:`motionflow.models.raft`). Computation is identical: the official forward
applies that normalisation only inside ``downsample``.
"""

from __future__ import annotations

import torch
from torch import nn

NORMS = ("group", "batch", "instance", "none")


def make_norm(kind: str, channels: int) -> nn.Module:
    """The normalisation layer named ``kind`` (``group`` uses ``channels // 8`` groups, as RAFT)."""
    if kind == "group":
        return nn.GroupNorm(num_groups=channels // 8, num_channels=channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels)  # affine=False, no running stats: no state-dict entries
    if kind == "none":
        return nn.Sequential()
    raise ValueError(f"norm_fn must be one of {NORMS}, found {kind!r}")


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with normalisation and ReLU, plus a (strided 1x1 conv + norm) shortcut.

    ``(B, in_planes, H, W) -> (B, planes, H / stride, W / stride)``:
    ``y = relu(norm2(conv2(relu(norm1(conv1(x)))))); out = relu(shortcut(x) + y)``.
    """

    def __init__(self, in_planes: int, planes: int, norm_fn: str = "group", stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.norm1 = make_norm(norm_fn, planes)
        self.norm2 = make_norm(norm_fn, planes)
        if stride == 1:
            self.downsample = None
        else:
            # official name of the norm inside the shortcut: downsample.1 (alias norm3, not registered here)
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride), make_norm(norm_fn, planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.norm1(self.conv1(x)))
        y = self.relu(self.norm2(self.conv2(y)))
        if self.downsample is not None:
            x = self.downsample(x)
        return self.relu(x + y)


class BasicEncoder(nn.Module):
    """RAFT's encoder: ``(B, 3, H, W) -> (B, output_dim, H/8, W/8)``.

    Args:
        output_dim: channels of the output (``fnet``: 256, ``cnet``: hidden + context = 256).
        norm_fn: ``instance`` (``fnet``), ``batch`` (``cnet``), ``group`` or ``none``.
        dropout: ``Dropout2d`` probability after the output conv (RAFT evaluation: 0, no module).

    ``forward`` also takes a list/tuple of equally-sized batches (RAFT runs both frames through
    ``fnet`` as one batch) and returns the outputs split the same way.
    """

    def __init__(self, output_dim: int = 128, norm_fn: str = "batch", dropout: float = 0.0):
        super().__init__()
        self.norm_fn = norm_fn
        # registration order as the official class (norm1 before conv1): same state-dict order
        self.norm1 = make_norm(norm_fn, 64)
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.relu1 = nn.ReLU(inplace=True)
        self.in_planes = 64
        self.layer1 = self._make_layer(64, stride=1)
        self.layer2 = self._make_layer(96, stride=2)
        self.layer3 = self._make_layer(128, stride=2)
        self.conv2 = nn.Conv2d(128, output_dim, kernel_size=1)
        self.dropout = nn.Dropout2d(p=dropout) if dropout > 0 else None
        for m in self.modules():  # RAFT's initialisation (used when training from scratch)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)):
                if m.weight is not None:
                    nn.init.constant_(m.weight, 1)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)

    def _make_layer(self, dim: int, stride: int) -> nn.Sequential:
        layers = (
            ResidualBlock(self.in_planes, dim, self.norm_fn, stride=stride),
            ResidualBlock(dim, dim, self.norm_fn, stride=1),
        )
        self.in_planes = dim
        return nn.Sequential(*layers)

    def forward(self, x):
        is_list = isinstance(x, (list, tuple))
        if is_list:
            sizes = [t.shape[0] for t in x]
            x = torch.cat(list(x), dim=0)
        x = self.relu1(self.norm1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.conv2(x)
        if self.dropout is not None:
            x = self.dropout(x)
        if is_list:
            return torch.split(x, sizes, dim=0)
        return x
