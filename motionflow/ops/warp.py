"""Backward warping, forward splatting and flow composition for dense 2-D flow.

Pixel-coordinate convention (used by every image-side op of :mod:`motionflow.ops`)
-----------------------------------------------------------------------------------
Pixel centres sit at integer coordinates: the top-left pixel is ``(x, y) = (0, 0)`` and the
bottom-right one is ``(W - 1, H - 1)``. Coordinates are stored **x first** (channel 0 = x = column,
channel 1 = y = row), as RAFT's ``coords_grid``. Sampling a tensor at a real-valued pixel
coordinate is bilinear interpolation between the four surrounding pixel centres, i.e.
``torch.nn.functional.grid_sample`` with ``align_corners=True`` after normalising
``x -> 2 x / (W - 1) - 1`` (RAFT's ``bilinear_sampler``). With ``padding="zeros"`` a neighbour outside the
image contributes zero, so values fade out over the last pixel beyond the border.

A flow ``f`` of shape ``(B, 2, H, W)`` maps pixel ``p`` of frame ``t`` to ``p + f(p)`` in frame ``t+1``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from motionflow.errors import ShapeError

__all__ = ["coords_grid", "backward_warp", "BackwardWarp", "forward_splat", "compose_flows"]

_SPLAT_MODES = ("average", "softmax")


def _check_image(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"{name}: expected a torch.Tensor of shape (B, C, H, W), found {type(x).__name__}")
    if x.ndim != 4:
        raise ShapeError(f"{name}: expected a 4-D tensor (B, C, H, W), found shape {tuple(x.shape)}")


def _check_flow(name: str, flow: torch.Tensor, like: torch.Tensor | None = None, like_name: str = "x") -> None:
    if not isinstance(flow, torch.Tensor):
        raise ShapeError(f"{name}: expected a torch.Tensor of shape (B, 2, H, W), found {type(flow).__name__}")
    if flow.ndim != 4 or flow.shape[1] != 2:
        raise ShapeError(f"{name}: expected a flow of shape (B, 2, H, W), found shape {tuple(flow.shape)}")
    if like is not None and (like.shape[0] != flow.shape[0] or like.shape[-2:] != flow.shape[-2:]):
        raise ShapeError(
            f"{name}: batch and spatial size must match {like_name} {tuple(like.shape)} "
            f"(B={like.shape[0]}, H, W={tuple(like.shape[-2:])}), found shape {tuple(flow.shape)}"
        )


def coords_grid(batch: int, height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Pixel coordinates of every pixel centre, x first.

    Args:
        batch, height, width: output size.

    Returns:
        ``(B, 2, H, W)`` tensor with ``[:, 0] = x`` (column index) and ``[:, 1] = y`` (row index), as
        RAFT's ``coords_grid``.
    """
    from kornia.geometry import create_meshgrid

    grid = create_meshgrid(height, width, normalized_coordinates=False, device=device, dtype=dtype)  # (1,H,W,2)
    return grid.permute(0, 3, 1, 2).expand(batch, 2, height, width).contiguous()


def backward_warp(
    x: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear", padding: str = "zeros"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``x`` at ``p + flow(p)`` (backward warping: pull frame t+1 back onto frame t).

    Args:
        x: ``(B, C, H_x, W_x)`` tensor to sample (e.g. frame t+1, or a flow field).
        flow: ``(B, 2, H, W)`` displacement in pixels, x first; the output has the flow's size.
        mode: ``"bilinear"`` or ``"nearest"``.
        padding: ``"zeros"``, ``"border"`` or ``"reflection"`` (values outside ``x``).

    Returns:
        ``(warped, inside)``: ``warped`` is ``(B, C, H, W)``; ``inside`` is a bool ``(B, H, W)`` mask,
        True where ``p + flow(p)`` lies within the pixel-centre hull ``[0, W_x-1] x [0, H_x-1]``.

    Uses ``kornia.geometry.remap`` with ``align_corners=True`` (see the module docstring for the
    coordinate convention). Differentiable with respect to ``x`` and ``flow``.
    """
    _check_image("x", x)
    _check_flow("flow", flow)
    if x.shape[0] != flow.shape[0]:
        raise ShapeError(f"flow: batch size must match x ({x.shape[0]}), found {flow.shape[0]}")
    if mode not in ("bilinear", "nearest"):
        raise ShapeError(f"mode: expected 'bilinear' or 'nearest', found {mode!r}")
    if padding not in ("zeros", "border", "reflection"):
        raise ShapeError(f"padding: expected 'zeros', 'border' or 'reflection', found {padding!r}")
    from kornia.geometry import remap

    b, _, h, w = flow.shape
    hx, wx = x.shape[-2:]
    grid = coords_grid(b, h, w, device=flow.device, dtype=flow.dtype)
    target = grid + flow
    mx, my = target[:, 0], target[:, 1]
    warped = remap(x, mx, my, mode=mode, padding_mode=padding, align_corners=True)
    inside = (mx >= 0) & (mx <= wx - 1) & (my >= 0) & (my <= hx - 1)
    return warped, inside


class BackwardWarp(nn.Module):
    """``nn.Module`` twin of :func:`backward_warp` (no parameters)."""

    def __init__(self, mode: str = "bilinear", padding: str = "zeros"):
        super().__init__()
        self.mode = mode
        self.padding = padding

    def forward(self, x: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return backward_warp(x, flow, mode=self.mode, padding=self.padding)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, padding={self.padding!r}"


def forward_splat(
    x: torch.Tensor,
    flow: torch.Tensor,
    weights: torch.Tensor | None = None,
    mode: str = "average",
    eps: float = 1e-7,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear forward splatting of ``x`` along ``flow`` (Niklaus & Liu, CVPR 2020, "Softmax Splatting").

    Every source pixel ``p`` is pushed to ``q = p + flow(p)`` and shares its value between the four
    pixel centres around ``q`` with bilinear weights ``b``. Collisions are resolved by normalisation:

    - ``"average"``: ``out = sum(b * w * x) / sum(b * w)`` with ``w = weights`` (default 1: average
      splatting; a given ``weights`` gives the paper's *linear* splatting);
    - ``"softmax"``: ``out = sum(b * exp(Z) * x) / sum(b * exp(Z))`` with ``Z = weights`` the importance
      metric (e.g. ``-alpha * |brightness error|`` or inverse depth); required. ``Z`` is shifted by its
      per-image maximum before ``exp`` (same result, no overflow).

    Args:
        x: ``(B, C, H, W)`` values to splat.
        flow: ``(B, 2, H, W)`` forward flow in pixels (x first).
        weights: optional ``(B, 1, H, W)`` per-source-pixel weight / importance.
        mode: ``"average"`` or ``"softmax"``.
        eps: a target pixel whose normaliser is ``<= eps`` is a hole (output 0).

    Returns:
        ``(splatted, covered)``: ``(B, C, H, W)`` splatted values and a bool ``(B, H, W)`` mask of target
        pixels that received any weight (False = disocclusion hole). Differentiable in ``x``, ``flow``
        and ``weights``.
    """
    _check_image("x", x)
    _check_flow("flow", flow, x, "x")
    if mode not in _SPLAT_MODES:
        raise ShapeError(f"mode: expected one of {_SPLAT_MODES}, found {mode!r}")
    b, c, h, w = x.shape
    if weights is not None:
        if not isinstance(weights, torch.Tensor) or weights.shape != (b, 1, h, w):
            found = tuple(weights.shape) if isinstance(weights, torch.Tensor) else type(weights).__name__
            raise ShapeError(f"weights: expected shape {(b, 1, h, w)}, found {found}")
    if mode == "softmax":
        if weights is None:
            raise ShapeError("weights: softmax splatting needs an importance metric Z of shape (B, 1, H, W), found None")
        z = weights - weights.amax(dim=(1, 2, 3), keepdim=True).detach()
        wgt = z.exp()
    else:
        wgt = torch.ones_like(x[:, :1]) if weights is None else weights

    grid = coords_grid(b, h, w, device=x.device, dtype=flow.dtype)
    target = grid + flow
    tx, ty = target[:, 0], target[:, 1]  # (B,H,W)
    x0 = torch.floor(tx)
    y0 = torch.floor(ty)
    fx = tx - x0
    fy = ty - y0
    x0 = x0.long()
    y0 = y0.long()

    values = torch.cat([x * wgt, wgt], dim=1).reshape(b, c + 1, h * w)
    out = values.new_zeros(b, c + 1, h * w)
    corners = (
        (x0, y0, (1 - fx) * (1 - fy)),
        (x0 + 1, y0, fx * (1 - fy)),
        (x0, y0 + 1, (1 - fx) * fy),
        (x0 + 1, y0 + 1, fx * fy),
    )
    for cx, cy, bw in corners:
        valid = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
        idx = (cy.clamp(0, h - 1) * w + cx.clamp(0, w - 1)).reshape(b, 1, h * w)
        contrib = values * (bw * valid).reshape(b, 1, h * w).to(values.dtype)
        out = out.scatter_add(2, idx.expand(b, c + 1, h * w), contrib)
    out = out.reshape(b, c + 1, h, w)
    norm = out[:, c:]
    covered = norm[:, 0] > eps
    splatted = torch.where(norm > eps, out[:, :c] / norm.clamp_min(eps), torch.zeros_like(out[:, :c]))
    return splatted, covered


def compose_flows(f_ab: torch.Tensor, f_bc: torch.Tensor, padding: str = "border") -> torch.Tensor:
    """Chain two flows: ``f_ac(p) = f_ab(p) + f_bc(p + f_ab(p))``.

    Args:
        f_ab: ``(B, 2, H, W)`` flow from frame a to frame b.
        f_bc: ``(B, 2, H, W)`` flow from frame b to frame c.
        padding: how ``f_bc`` is extrapolated where ``p + f_ab(p)`` leaves frame b (default
            ``"border"``: the nearest known flow, rather than zero motion).

    Returns:
        ``(B, 2, H, W)`` flow from frame a to frame c.
    """
    _check_flow("f_ab", f_ab)
    _check_flow("f_bc", f_bc, f_ab, "f_ab")
    warped, _ = backward_warp(f_bc, f_ab, padding=padding)
    return f_ab + warped
