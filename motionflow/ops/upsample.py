"""Flow upsampling: RAFT's learned convex upsampling and magnitude-correct resizing."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from motionflow.errors import ShapeError
from motionflow.ops.warp import _check_flow

__all__ = ["convex_upsample", "ConvexUpsample", "resize_flow"]


def convex_upsample(flow: torch.Tensor, mask: torch.Tensor, factor: int = 8) -> torch.Tensor:
    """RAFT's convex upsampling (``RAFT.upsample_flow``, Teed & Deng 2020, Sec. 3.3).

    Each fine pixel is a convex combination of the 3x3 coarse neighbours of its coarse pixel (zero
    padding at the border), with weights ``softmax`` over the 9 logits of ``mask``. The flow is
    multiplied by ``factor`` (coarse pixels -> fine pixels).

    Args:
        flow: ``(B, 2, H, W)`` coarse flow.
        mask: ``(B, 9*factor*factor, H, W)`` logits (RAFT's mask head output, already scaled by 0.25),
            laid out as ``(9, factor_y, factor_x)`` with the 3x3 neighbour index outermost (RAFT's
            ``mask.view(N, 1, 9, 8, 8, H, W)``).
        factor: upsampling factor (RAFT: 8).

    Returns:
        ``(B, 2, factor*H, factor*W)``; fine pixel ``(factor*i + dy, factor*j + dx)`` comes from coarse
        pixel ``(i, j)`` and mask channels ``k*factor^2 + dy*factor + dx``.
    """
    _check_flow("flow", flow)
    factor = int(factor)
    if factor < 1:
        raise ShapeError(f"factor: expected a positive integer, found {factor}")
    b, _, h, w = flow.shape
    expected = (b, 9 * factor * factor, h, w)
    if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != expected:
        found = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ShapeError(f"mask: expected shape {expected} (9*factor^2 logits per coarse pixel), found {found}")
    mask = torch.softmax(mask.view(b, 1, 9, factor, factor, h, w), dim=2)
    up = F.unfold(factor * flow, [3, 3], padding=1).view(b, 2, 9, 1, 1, h, w)
    up = torch.sum(mask * up, dim=2)  # (B, 2, fy, fx, H, W)
    up = up.permute(0, 1, 4, 2, 5, 3)  # (B, 2, H, fy, W, fx)
    return up.reshape(b, 2, factor * h, factor * w)


class ConvexUpsample(nn.Module):
    """``nn.Module`` twin of :func:`convex_upsample` (the mask comes from the caller's mask head)."""

    def __init__(self, factor: int = 8):
        super().__init__()
        self.factor = int(factor)

    def forward(self, flow: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return convex_upsample(flow, mask, self.factor)

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


def resize_flow(
    flow: torch.Tensor, size: tuple[int, int], mode: str = "bilinear", align_corners: bool = False
) -> torch.Tensor:
    """Resize a flow field and rescale its vectors: ``u *= W'/W``, ``v *= H'/H``.

    Args:
        flow: ``(B, 2, H, W)`` flow in pixels of the input size.
        size: ``(H', W')`` output size.
        mode: ``F.interpolate`` mode (``"bilinear"``, ``"bicubic"``, ``"nearest"``, ``"area"``).
        align_corners: passed to ``F.interpolate`` for the (bi)linear/cubic modes. The vectors are
            scaled by ``W'/W`` and ``H'/H`` in either case (the pixel-area convention of the default
            ``False``; RAFT's ``upflow8`` also multiplies by the size ratio with ``True``).

    Returns:
        ``(B, 2, H', W')`` flow in pixels of the output size.
    """
    _check_flow("flow", flow)
    if len(size) != 2 or any(int(s) < 1 for s in size):
        raise ShapeError(f"size: expected (H, W) with positive integers, found {tuple(size)}")
    new_h, new_w = int(size[0]), int(size[1])
    h, w = flow.shape[-2:]
    kwargs = {"align_corners": align_corners} if mode in ("bilinear", "bicubic") else {}
    out = F.interpolate(flow, size=(new_h, new_w), mode=mode, **kwargs)
    scale = torch.tensor([new_w / w, new_h / h], dtype=out.dtype, device=out.device).view(1, 2, 1, 1)
    return out * scale
