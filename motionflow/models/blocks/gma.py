"""Global motion aggregation (GMA, Jiang et al., ICCV 2021), as used by VideoFlow and StreamFlow.

GMA lets every pixel borrow motion features from pixels that *look* alike: a self-attention matrix is
computed once from the context features (appearance only: ``softmax(q . k / sqrt(d))``, no
positional term in the VideoFlow / StreamFlow configuration) and, at every refinement iteration,
applied to the motion features:

    ``aggregated = motion + gamma * (attention @ to_v(motion))``

with ``gamma`` a learned scalar (initialised to 0). State-dict names follow the official code:
``att.to_qk.weight`` for :class:`ContextAttention` and ``aggregator.{to_v.weight, gamma}`` for
:class:`MotionAggregation`. The official ``Attention`` also constructs a relative position embedding
(``pos_emb.rel_height``, ``pos_emb.rel_width``, buffer ``pos_emb.rel_ind``) that the content-only
attention never reads; it is not built here, and checkpoint loaders accept those keys by name
(:data:`UNUSED_POSITION_KEYS`).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["context_attention", "ContextAttention", "MotionAggregation", "UNUSED_POSITION_KEYS"]

#: Keys of the official ``Attention`` module (relative to it) that never influence the output.
UNUSED_POSITION_KEYS = ("pos_emb.rel_ind", "pos_emb.rel_height.weight", "pos_emb.rel_width.weight")


def context_attention(q: torch.Tensor, k: torch.Tensor, heads: int, scale: float) -> torch.Tensor:
    """Appearance self-attention of GMA.

    Args:
        q, k: ``(B, heads*d, H, W)`` query and key maps.
        heads: number of heads.
        scale: multiplier of the queries (``d ** -0.5``).

    Returns:
        ``(B, heads, H*W, H*W)`` attention; query and key index ``y * W + x``; rows sum to 1.
    """
    b, c, h, w = q.shape
    d = c // heads
    q = (scale * q).reshape(b, heads, d, h * w).transpose(-2, -1)  # (B, heads, HW, d)
    k = k.reshape(b, heads, d, h * w)  # (B, heads, d, HW)
    return (q @ k).softmax(dim=-1)


class ContextAttention(nn.Module):
    """GMA's attention from context features (official ``Attention``, content only).

    ``forward(context (B, dim, H, W)) -> (B, heads, H*W, H*W)``.
    """

    def __init__(self, dim: int = 128, heads: int = 1, dim_head: int = 128):
        super().__init__()
        self.heads = heads
        self.scale = dim_head**-0.5
        self.to_qk = nn.Conv2d(dim, heads * dim_head * 2, 1, bias=False)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        q, k = self.to_qk(context).chunk(2, dim=1)
        return context_attention(q, k, self.heads, self.scale)


class MotionAggregation(nn.Module):
    """GMA's aggregation of motion features with a precomputed attention (official ``Aggregate``).

    ``forward(attention (B, heads, H*W, H*W), motion (B, dim, H, W)) -> (B, dim, H, W)``
    = ``motion + gamma * (attention @ to_v(motion))`` (plus a 1x1 ``project`` when
    ``heads * dim_head != dim``).
    """

    def __init__(self, dim: int = 128, heads: int = 1, dim_head: int = 128):
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.to_v = nn.Conv2d(dim, inner, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.project = nn.Conv2d(inner, dim, 1, bias=False) if inner != dim else None

    def forward(self, attention: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        b, _, h, w = motion.shape
        v = self.to_v(motion)
        d = v.shape[1] // self.heads
        v = v.reshape(b, self.heads, d, h * w).transpose(-2, -1)  # (B, heads, HW, d)
        out = (attention @ v).transpose(-2, -1).reshape(b, self.heads * d, h, w)
        if self.project is not None:
            out = self.project(out)
        return motion + self.gamma * out
