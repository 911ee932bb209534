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

Memory: the attention matrix has ``(H*W)^2`` entries per frame (4.3 GB at 1080p, 1/8 resolution)
and lives through every iteration. Above ``ContextAttention.max_bytes`` it is kept as its factors
instead (:class:`FactoredAttention`: the scaled queries and the keys, ``2 * H*W * d`` numbers) and
:class:`MotionAggregation` evaluates ``softmax(q k^T) @ v`` with the fused
``scaled_dot_product_attention`` at every iteration: the same function up to float rounding, at the
price of recomputing the scores per iteration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import torch
from torch import nn

from .memory import DEFAULT_MAX_BYTES, exceeds, softmax_attention

__all__ = [
    "context_attention",
    "FactoredAttention",
    "apply_attention",
    "ContextAttention",
    "MotionAggregation",
    "UNUSED_POSITION_KEYS",
]

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


@dataclass
class FactoredAttention:
    """GMA's attention ``softmax(q k^T)`` kept as its factors (the memory-bounded form).

    Attributes:
        q: ``(B, heads, H*W, d)`` queries, already multiplied by the scale.
        k: ``(B, heads, H*W, d)`` keys.
    """

    q: torch.Tensor
    k: torch.Tensor


def apply_attention(attention: Union[torch.Tensor, FactoredAttention], v: torch.Tensor) -> torch.Tensor:
    """``attention @ v`` for ``v`` ``(B, heads, H*W, d)``: a matrix product with the explicit
    ``(B, heads, H*W, H*W)`` attention, or the fused softmax attention of its factors."""
    if isinstance(attention, FactoredAttention):
        return softmax_attention(attention.q, attention.k, v, scale=None, max_bytes=0)
    return attention @ v


class ContextAttention(nn.Module):
    """GMA's attention from context features (official ``Attention``, content only).

    ``forward(context (B, dim, H, W)) -> (B, heads, H*W, H*W)``, or a :class:`FactoredAttention` when
    that matrix would exceed ``max_bytes`` (``None``: always the matrix; ``0``: always the factors).
    """

    def __init__(self, dim: int = 128, heads: int = 1, dim_head: int = 128):
        super().__init__()
        self.heads = heads
        self.scale = dim_head**-0.5
        self.to_qk = nn.Conv2d(dim, heads * dim_head * 2, 1, bias=False)
        self.max_bytes: int | None = DEFAULT_MAX_BYTES

    def forward(self, context: torch.Tensor) -> Union[torch.Tensor, FactoredAttention]:
        q, k = self.to_qk(context).chunk(2, dim=1)
        b, c, h, w = q.shape
        if not exceeds(b * self.heads * (h * w) ** 2 * q.element_size(), self.max_bytes):
            return context_attention(q, k, self.heads, self.scale)
        d = c // self.heads
        q = (self.scale * q).reshape(b, self.heads, d, h * w).transpose(-2, -1)
        k = k.reshape(b, self.heads, d, h * w).transpose(-2, -1)
        return FactoredAttention(q.contiguous(), k.contiguous())


class MotionAggregation(nn.Module):
    """GMA's aggregation of motion features with a precomputed attention (official ``Aggregate``).

    ``forward(attention (B, heads, H*W, H*W) or FactoredAttention, motion (B, dim, H, W)) -> (B, dim, H, W)``
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

    def forward(self, attention: Union[torch.Tensor, FactoredAttention], motion: torch.Tensor) -> torch.Tensor:
        b, _, h, w = motion.shape
        v = self.to_v(motion)
        d = v.shape[1] // self.heads
        v = v.reshape(b, self.heads, d, h * w).transpose(-2, -1)  # (B, heads, HW, d)
        out = apply_attention(attention, v).transpose(-2, -1).reshape(b, self.heads * d, h, w)
        if self.project is not None:
            out = self.project(out)
        return motion + self.gamma * out
