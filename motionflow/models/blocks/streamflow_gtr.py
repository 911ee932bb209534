"""GTR: StreamFlow's Global Temporal Regressor (Sun et al., NeurIPS 2024, section 3.4).

GTR adds two things to an SKFlow/GMA update operator so that the T-1 flows of one SIM group are refined
*jointly* instead of independently:

1. **Temporal attention** (:class:`TemporalTransformer`, the official ``TemporalLayer2``): at every pixel
   of the 1/8-resolution grid, the motion features of the T-1 flows form a sequence of T-1 tokens of 128
   channels, and one pre-norm transformer block (1-head self-attention over the T-1 tokens, then an MLP
   128 -> 256 -> 128) mixes them. The whole block is **zero-initialised** (every parameter, LayerNorm
   weights included), so at the start of training it outputs exactly its input (paper Tab. 9: zero init
   beats the default init).
2. **Joint flow head**: the hidden states of the T-1 flows are concatenated along channels
   (``128 * (T-1)`` channels) and one SK block regresses all ``2 * (T-1)`` flow updates at once
   (channels ``2i : 2i+2`` belong to flow ``i``). See :mod:`motionflow.models.blocks.streamflow_update`.

State-dict names follow the official code (timm ``Attention`` / ``Mlp``):
``transformer_block.{norm1,norm2}.{weight,bias}``, ``transformer_block.attn.qkv.weight`` (no bias),
``transformer_block.attn.proj.{weight,bias}``, ``transformer_block.mlp.{fc1,fc2}.{weight,bias}``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "pixels_to_sequences",
    "sequences_to_pixels",
    "temporal_self_attention",
    "TemporalSelfAttention",
    "TemporalMlp",
    "TemporalTransformerBlock",
    "TemporalTransformer",
]


def pixels_to_sequences(x: torch.Tensor, steps: int) -> torch.Tensor:
    """Per-pixel temporal sequences from a batch of feature maps.

    Args:
        x: ``(B * S, C, H, W)`` feature maps, b-major / step-minor (the official ``(B T) C H W``).
        steps: ``S``, the sequence length (T - 1 flows per SIM group).

    Returns:
        ``(B * H * W, S, C)``: one sequence of S tokens per pixel (the official ``(B H W) T C``).
    """
    bs, c, h, w = x.shape
    b = bs // steps
    return x.reshape(b, steps, c, h, w).permute(0, 3, 4, 1, 2).reshape(b * h * w, steps, c)


def sequences_to_pixels(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`pixels_to_sequences`: ``(B * H * W, S, C)`` -> ``(B * S, C, H, W)``."""
    bhw, s, c = x.shape
    b = bhw // (height * width)
    return x.reshape(b, height, width, s, c).permute(0, 3, 4, 1, 2).reshape(b * s, c, height, width)


def temporal_self_attention(
    x: torch.Tensor,
    qkv_weight: torch.Tensor,
    proj_weight: torch.Tensor,
    proj_bias: torch.Tensor | None,
    num_heads: int = 1,
) -> torch.Tensor:
    """Multi-head self-attention over the token axis (timm ``Attention`` with ``qkv_bias=False``).

    Args:
        x: ``(N, S, C)`` tokens (N sequences of S tokens).
        qkv_weight: ``(3C, C)``; rows ``0:C`` give queries, ``C:2C`` keys, ``2C:3C`` values.
        proj_weight, proj_bias: ``(C, C)`` and ``(C,)`` output projection.
        num_heads: heads; the scale is ``(C / num_heads) ** -0.5``.

    Returns:
        ``(N, S, C)``.
    """
    n, s, c = x.shape
    qkv = F.linear(x, qkv_weight).reshape(n, s, 3, num_heads, c // num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # (N, heads, S, C / heads) each
    out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T * d^-0.5) v
    out = out.transpose(1, 2).reshape(n, s, c)
    return F.linear(out, proj_weight, proj_bias)


class TemporalSelfAttention(nn.Module):
    """nn.Module twin of :func:`temporal_self_attention` (parameters ``qkv``, ``proj``)."""

    def __init__(self, dim: int, num_heads: int = 1) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, S, C) -> (N, S, C)``."""
        return temporal_self_attention(x, self.qkv.weight, self.proj.weight, self.proj.bias, self.num_heads)


class TemporalMlp(nn.Module):
    """Two-layer MLP ``C -> hidden -> C`` with exact GELU (timm ``Mlp``; parameters ``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., C) -> (..., C)``."""
        return self.fc2(F.gelu(self.fc1(x)))


class TemporalTransformerBlock(nn.Module):
    """Pre-norm transformer block over per-pixel temporal sequences.

    ``x = x + attn(norm1(x)); x = x + mlp(norm2(x))`` with LayerNorm eps 1e-5, ``num_heads`` heads
    (1 in StreamFlow), MLP ratio 2.
    """

    def __init__(self, dim: int = 128, num_heads: int = 1, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        # registration order = the official state-dict order (norm1, norm2, attn, mlp)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn = TemporalSelfAttention(dim, num_heads)
        self.mlp = TemporalMlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, S, C) -> (N, S, C)``."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TemporalTransformer(nn.Module):
    """GTR's per-pixel temporal attention over the T-1 motion features of a SIM group.

    Wraps one :class:`TemporalTransformerBlock` (attribute ``transformer_block``, as the official
    ``TemporalLayer2``) whose parameters are all zero at construction, so the untrained layer is the
    identity (paper: zero initialisation).

    Args:
        dim: channels of the motion features (128).
        zero_init: zero every parameter at construction (the official behaviour).
    """

    def __init__(self, dim: int = 128, num_heads: int = 1, mlp_ratio: float = 2.0, zero_init: bool = True) -> None:
        super().__init__()
        self.transformer_block = TemporalTransformerBlock(dim, num_heads, mlp_ratio)
        if zero_init:
            with torch.no_grad():
                for p in self.transformer_block.parameters():
                    p.zero_()

    def forward(self, motion: torch.Tensor, steps: int) -> torch.Tensor:
        """Attend over the ``steps`` flows at every pixel.

        Args:
            motion: ``(B * S, C, H, W)`` motion features, b-major / flow-minor.
            steps: ``S = T - 1``.

        Returns:
            ``(B * S, C, H, W)``, same layout.
        """
        h, w = motion.shape[-2:]
        seq = self.transformer_block(pixels_to_sequences(motion, steps))
        return sequences_to_pixels(seq, h, w)
