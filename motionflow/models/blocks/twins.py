"""Twins-SVT vision transformer (Chu et al., NeurIPS 2021), the encoder of VideoFlow and StreamFlow.

Twins-SVT alternates two attention kinds inside every stage:

* **LSA** (locally-grouped self-attention, :class:`LocallyGroupedAttn`): attention inside
  non-overlapping ``ws x ws`` windows;
* **GSA** (global sub-sampled attention, :class:`GlobalSubSampleAttn`): every token attends to a
  ``sr``-times sub-sampled copy of the whole map (keys and values from a stride-``sr`` convolution);

with a conditional position encoding (:class:`PosConv`, the PEG of CPVT: a 3x3 depthwise conv plus a
residual) after the first block of each stage. A stage starts with a :class:`PatchEmbed` (strided
conv, then LayerNorm).

The optical-flow networks use ``twins_svt_large`` truncated to its first two stages (stride 4 then
2, 128 then 256 channels, so features at 1/8 resolution); the third and fourth stages and the
classifier are deleted, but the final LayerNorm ``norm`` (1024 channels) stays in the official
state dicts although it never runs. :class:`TwinsSVT` keeps it so that the official checkpoints load
strictly. Parameter names follow timm 0.4.12 (``patch_embeds``, ``blocks``, ``pos_block``, ``norm``),
the library VideoFlow was trained with, and the arithmetic follows it too: attention as
``softmax((q @ k^T) * scale) @ v`` (no fused kernel), exact GELU, block LayerNorms with eps 1e-6, patch
and sub-sampling LayerNorms with eps 1e-5, LSA zero-padding at the bottom/right without masking, GSA
sub-sampling with floor division.

Memory (large frames): each attention module and block has a ``max_bytes`` budget
(:mod:`~motionflow.models.blocks.memory`). Above it GSA uses the fused
``scaled_dot_product_attention`` instead of the explicit score matrix (float rounding apart, the same
function; deviation from timm 0.4.12's arithmetic, which is kept below the budget), and LSA and the
MLP run on chunks of windows / tokens (same arithmetic).

For StreamFlow's stacked encoding (frames embedded separately but transformed as one tall image)
use the pieces: :meth:`TwinsSVT.embed` per frame, then :meth:`TwinsSVT.transform` on the stacked
tokens.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .memory import DEFAULT_MAX_BYTES, rows_per_chunk, rowwise_in_chunks, softmax_attention

__all__ = [
    "PatchEmbed",
    "LocallyGroupedAttn",
    "GlobalSubSampleAttn",
    "Mlp",
    "TwinsBlock",
    "PosConv",
    "TwinsSVT",
    "TwinsEncoder",
    "TWINS_SVT_LARGE",
]

Size = tuple[int, int]

#: Hyper-parameters of timm's ``twins_svt_large`` (all four stages; the flow encoders run the first two).
TWINS_SVT_LARGE = dict(
    embed_dims=(128, 256, 512, 1024),
    num_heads=(4, 8, 16, 32),
    depths=(2, 2, 18, 2),
    sr_ratios=(8, 4, 2, 1),
    window_size=7,
    mlp_ratio=4.0,
)


class PatchEmbed(nn.Module):
    """Patch embedding: ``Conv2d(k = s = patch)`` then LayerNorm (eps 1e-5) over channels.

    ``forward(x (B, C, H, W)) -> (tokens (B, h*w, D), (h, w))`` with ``h, w = H // patch, W // patch``.
    """

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Size]:
        H, W = x.shape[-2:]
        x = self.proj(x).flatten(2).transpose(1, 2)
        return self.norm(x), (H // self.patch_size, W // self.patch_size)


class LocallyGroupedAttn(nn.Module):
    """LSA: multi-head self-attention inside non-overlapping ``ws x ws`` windows.

    The token map is zero-padded at the bottom/right to a multiple of ``ws``; the padded tokens take
    part in the attention (no mask), as in the official Twins / timm code, and are cropped afterwards.
    ``forward(x (B, h*w, C), (h, w)) -> (B, h*w, C)``.

    Memory: windows never interact, so rows of windows are processed in chunks whose ``qkv``, scores
    and output stay within ``max_bytes`` (``None``: all windows at once, the official layout); the
    result is the same.
    """

    def __init__(self, dim: int, num_heads: int, ws: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"LocallyGroupedAttn: dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.ws = ws
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.max_bytes: int | None = DEFAULT_MAX_BYTES

    def _window_rows(self, x: torch.Tensor, rows: int) -> torch.Tensor:
        """Attention and projection of ``rows`` rows of windows: ``x`` ``(B, h', W, C)`` with
        ``h' <= rows * ws`` -> ``(B, rows * ws, gw * ws, C)`` (zero-padded at the bottom/right first)."""
        B, h, W, C = x.shape
        ws, heads = self.ws, self.num_heads
        gw = -(-W // ws)
        x = F.pad(x, (0, 0, 0, gw * ws - W, 0, rows * ws - h))
        x = x.reshape(B, rows, ws, gw, ws, C).transpose(2, 3)  # (B, rows, gw, ws, ws, C)
        qkv = self.qkv(x).reshape(B, rows * gw, ws * ws, 3, heads, C // heads).permute(3, 0, 1, 4, 2, 5)
        out = softmax_attention(qkv[0], qkv[1], qkv[2], self.scale)  # (B, groups, heads, ws*ws, d)
        out = out.transpose(2, 3).reshape(B, rows, gw, ws, ws, C)
        return self.proj(out.transpose(2, 3).reshape(B, rows * ws, gw * ws, C))

    def forward(self, x: torch.Tensor, size: Size) -> torch.Tensor:
        B, N, C = x.shape
        H, W = size
        ws = self.ws
        gh, gw = -(-H // ws), -(-W // ws)
        x = x.view(B, H, W, C)
        # per row of windows: qkv (3C) and output (C) per token, scores and softmax (2 heads ws^2)
        row_bytes = B * gw * ws * ws * (4 * C + 2 * self.num_heads * ws * ws) * x.element_size()
        rows = rows_per_chunk(gh, row_bytes, self.max_bytes)
        if rows >= gh:
            return self._window_rows(x, gh)[:, :H, :W].reshape(B, N, C)
        out = x.new_empty(B, H, W, C)
        for r0 in range(0, gh, rows):
            r1 = min(gh, r0 + rows)
            y0, y1 = r0 * ws, min(H, r1 * ws)
            out[:, y0:y1] = self._window_rows(x[:, y0:y1], r1 - r0)[:, : y1 - y0, :W]
        return out.reshape(B, N, C)


class GlobalSubSampleAttn(nn.Module):
    """GSA: every token attends to the map sub-sampled by a ``sr x sr`` stride-``sr`` convolution.

    Keys/values come from ``LayerNorm(sr_conv(x))`` (eps 1e-5; floor division of the size).
    ``forward(x (B, h*w, C), (h, w)) -> (B, h*w, C)``.

    Memory: a score matrix above ``max_bytes`` (1080p, first stage: 4.3 GB per frame) is never built;
    the fused ``scaled_dot_product_attention`` computes the same softmax attention
    (:func:`~motionflow.models.blocks.memory.softmax_attention`; ``None``: always the explicit matrix).
    """

    def __init__(self, dim: int, num_heads: int, sr_ratio: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"GlobalSubSampleAttn: dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim, bias=True)
        self.kv = nn.Linear(dim, dim * 2, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        self.max_bytes: int | None = DEFAULT_MAX_BYTES
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim)
        else:
            self.sr = None
            self.norm = None

    def forward(self, x: torch.Tensor, size: Size) -> torch.Tensor:
        B, N, C = x.shape
        heads = self.num_heads
        q = self.q(x).reshape(B, N, heads, C // heads).permute(0, 2, 1, 3)
        if self.sr is not None:
            x = x.permute(0, 2, 1).reshape(B, C, *size)
            x = self.sr(x).reshape(B, C, -1).permute(0, 2, 1)
            x = self.norm(x)
        kv = self.kv(x).reshape(B, -1, 2, heads, C // heads).permute(2, 0, 3, 1, 4)
        out = softmax_attention(q, kv[0], kv[1], self.scale, self.max_bytes)  # (B, heads, N, d)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    """Transformer MLP ``fc2(GELU(fc1(x)))`` (exact GELU); ``(..., C) -> (..., C)``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class TwinsBlock(nn.Module):
    """Pre-norm transformer block ``x + attn(norm1(x))``, ``x + mlp(norm2(x))`` (LayerNorm eps 1e-6).

    ``ws > 1`` gives an LSA block, ``ws == 1`` a GSA block with sub-sampling ``sr_ratio``.
    ``forward(x (B, h*w, C), (h, w)) -> (B, h*w, C)``.

    Memory: the MLP branch ``x + mlp(norm2(x))`` is token-wise; above ``max_bytes`` of intermediates
    (its 4x-wide hidden layer: 1 GB for StreamFlow's stacked frames at 1080p) it runs on chunks of
    tokens (:func:`~motionflow.models.blocks.memory.rowwise_in_chunks`, same result).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, sr_ratio: int, ws: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        if ws == 1:
            self.attn: nn.Module = GlobalSubSampleAttn(dim, num_heads, sr_ratio)
        else:
            self.attn = LocallyGroupedAttn(dim, num_heads, ws)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.max_bytes: int | None = DEFAULT_MAX_BYTES

    def _mlp_residual(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.norm2(x))

    def forward(self, x: torch.Tensor, size: Size) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), size)
        # per token: norm2, fc1 and GELU (2 x hidden), fc2, sum
        per_token = x.shape[0] * (3 * x.shape[-1] + 2 * self.mlp.fc1.out_features) * x.element_size()
        return rowwise_in_chunks(self._mlp_residual, x, per_token, self.max_bytes)


class PosConv(nn.Module):
    """Conditional position encoding (PEG): ``x + depthwise_conv3x3(x)`` on the token map.

    ``forward(x (B, h*w, C), (h, w)) -> (B, h*w, C)``.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2d(dim, dim, 3, 1, 1, bias=True, groups=dim))

    def forward(self, x: torch.Tensor, size: Size) -> torch.Tensor:
        B, N, C = x.shape
        feat = x.transpose(1, 2).view(B, C, *size)
        return (self.proj(feat) + feat).flatten(2).transpose(1, 2)


class TwinsSVT(nn.Module):
    """The first ``num_stages`` stages of a Twins-SVT (default: ``twins_svt_large``, 2 stages).

    Stage ``i``: ``patch_embeds[i]`` (patch 4 for the first stage, 2 after), then ``blocks[i]``
    alternating LSA (even index) and GSA (odd index) blocks, with ``pos_block[i]`` applied after block
    0. ``norm`` (LayerNorm over the last stage width of the full model, eps 1e-6) is kept for strict
    checkpoint loading only: the truncated encoder never applies it.
    """

    def __init__(
        self,
        num_stages: int = 2,
        in_chans: int = 3,
        embed_dims: Sequence[int] = TWINS_SVT_LARGE["embed_dims"],
        num_heads: Sequence[int] = TWINS_SVT_LARGE["num_heads"],
        depths: Sequence[int] = TWINS_SVT_LARGE["depths"],
        sr_ratios: Sequence[int] = TWINS_SVT_LARGE["sr_ratios"],
        window_size: int = TWINS_SVT_LARGE["window_size"],
        mlp_ratio: float = TWINS_SVT_LARGE["mlp_ratio"],
        keep_final_norm: bool = True,
    ):
        super().__init__()
        if not 1 <= num_stages <= len(embed_dims):
            raise ValueError(f"TwinsSVT: num_stages must be in 1..{len(embed_dims)}, found {num_stages}")
        self.num_stages = num_stages
        self.embed_dims = tuple(embed_dims[:num_stages])
        self.patch_embeds = nn.ModuleList()
        prev = in_chans
        for i in range(num_stages):
            self.patch_embeds.append(PatchEmbed(prev, embed_dims[i], 4 if i == 0 else 2))
            prev = embed_dims[i]
        self.blocks = nn.ModuleList(
            nn.ModuleList(
                TwinsBlock(embed_dims[i], num_heads[i], mlp_ratio, sr_ratios[i], window_size if j % 2 == 0 else 1)
                for j in range(depths[i])
            )
            for i in range(num_stages)
        )
        self.pos_block = nn.ModuleList(PosConv(embed_dims[i]) for i in range(num_stages))
        self.norm = nn.LayerNorm(embed_dims[-1], eps=1e-6) if keep_final_norm else None

    def embed(self, stage: int, x: torch.Tensor) -> tuple[torch.Tensor, Size]:
        """Patch embedding of stage ``stage``: ``(B, C, H, W) -> ((B, h*w, D), (h, w))``."""
        return self.patch_embeds[stage](x)

    def transform(self, stage: int, tokens: torch.Tensor, size: Size) -> torch.Tensor:
        """The transformer blocks of stage ``stage`` (PEG after block 0): ``(B, h*w, D) -> (B, h*w, D)``."""
        for j, blk in enumerate(self.blocks[stage]):
            tokens = blk(tokens, size)
            if j == 0:
                tokens = self.pos_block[stage](tokens, size)
        return tokens

    def stage(self, stage: int, x: torch.Tensor) -> torch.Tensor:
        """One full stage on a feature map: ``(B, C, H, W) -> (B, D, h, w)``."""
        tokens, (h, w) = self.embed(stage, x)
        tokens = self.transform(stage, tokens, (h, w))
        return tokens.reshape(x.shape[0], h, w, -1).permute(0, 3, 1, 2).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W) -> (B, embed_dims[num_stages-1], H / 2^(num_stages+1), W / 2^(num_stages+1))``."""
        for i in range(self.num_stages):
            x = self.stage(i, x)
        return x


class TwinsEncoder(nn.Module):
    """VideoFlow's ``twins_svt_large`` feature/context encoder: ``svt`` = :class:`TwinsSVT`, 2 stages.

    ``forward(images (B, 3, H, W), normalised to [-1, 1]) -> (B, 256, H // 8, W // 8)``; frames in the
    batch are encoded independently. The unused final ``svt.norm`` is not built by default
    (``keep_final_norm=False``): checkpoint loaders accept its keys by name.
    """

    def __init__(self, num_stages: int = 2, keep_final_norm: bool = False):
        super().__init__()
        self.svt = TwinsSVT(num_stages=num_stages, keep_final_norm=keep_final_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.svt(x)
