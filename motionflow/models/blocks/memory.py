"""Memory-bounded evaluation of the networks' largest layers (same outputs, bounded peak memory).

At 1080 x 1920 the official forwards build a few tensors that dwarf everything else (measured on the
meta device, ``benchmarks/networks.py --profile``):

* the **global sub-sampled attention** of the Twins encoders (:mod:`.twins`): a ``(B, heads, N, N / sr^2)``
  matrix at 1/4 resolution, 12 GB for VideoFlow's three frames and 65 GB for StreamFlow's stacked
  four frames, twice (scores and softmax);
* the **GMA attention** (:mod:`.gma`): ``(B, 1, hw, hw)`` at 1/8 resolution, 4.3 GB per frame, kept for
  every refinement iteration;
* the all-pairs **correlation volumes** (4.3 GB per frame pair; the on-demand pyramid of
  :mod:`motionflow.ops.correlation` replaces them);
* the **token-wise MLPs** and the **locally-grouped attention** of the Twins stages (a few hundred MB to
  1 GB each for the stacked StreamFlow frames).

Each layer that can build such a tensor has an attribute ``max_bytes``: the size above which it takes
its bounded path. ``None`` disables the bounded path (the official arithmetic with the full tensor,
e.g. for an ONNX export); ``0`` forces it. The bounded paths compute the same function:

* :func:`softmax_attention`: ``softmax(q k^T * scale) v`` with the explicit matrix when it fits, else
  ``torch.nn.functional.scaled_dot_product_attention`` (a fused kernel that never materialises the
  matrix; on CPU and CUDA it works on blocks of queries and keys with an online softmax, so the result
  differs from the explicit one by float rounding only: ~3e-7 relative);
* :func:`rowwise_in_chunks`: a token-wise (pointwise) layer applied to chunks of rows written into one
  output, bit-identical to the whole-tensor call.

:func:`set_max_bytes` sets the budget of every such layer of a network at once.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DEFAULT_MAX_BYTES",
    "exceeds",
    "softmax_attention",
    "rows_per_chunk",
    "rowwise_in_chunks",
    "set_max_bytes",
]

#: Default budget of one layer's largest intermediate tensor (bytes). Every tensor of the parity
#: fixtures' sizes is far below it (there the official path runs unchanged); at 1080p the bounded
#: paths take over.
DEFAULT_MAX_BYTES = 256 * 2**20


def exceeds(num_bytes: int, max_bytes: Optional[int]) -> bool:
    """Whether a tensor of ``num_bytes`` is over the budget ``max_bytes`` (``None``: never; ``0``: always)."""
    return max_bytes is not None and num_bytes > max_bytes


def softmax_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: Optional[float] = None,
    max_bytes: Optional[int] = None,
) -> torch.Tensor:
    """Dot-product attention ``softmax(q @ k^T * scale) @ v`` over the last two dimensions.

    Args:
        q: ``(..., Nq, d)`` queries; k: ``(..., Nk, d)`` keys; v: ``(..., Nk, dv)`` values.
        scale: multiplier of the scores (timm: ``d ** -0.5`` applied after the product); ``None`` when
            the caller has already scaled ``q`` (GMA).
        max_bytes: above this size of the ``(..., Nq, Nk)`` score matrix, the fused
            ``scaled_dot_product_attention`` runs instead (no matrix); ``None``: always explicit.

    Returns:
        ``(..., Nq, dv)``.
    """
    # sizes are read only under a budget: torch.Size.numel() pins symbolic sizes (dynamic ONNX export)
    if max_bytes is not None and exceeds(q.shape[:-1].numel() * k.shape[-2] * q.element_size(), max_bytes):
        return F.scaled_dot_product_attention(q, k, v, scale=1.0 if scale is None else scale)
    attn = q @ k.transpose(-2, -1)
    if scale is not None:
        attn = attn * scale
    return attn.softmax(dim=-1) @ v


def rows_per_chunk(total_rows: int, bytes_per_row: int, max_bytes: Optional[int]) -> int:
    """Rows per chunk so that a chunk's intermediates stay within ``max_bytes`` (at least one row;
    all rows when ``max_bytes`` is ``None`` or everything fits)."""
    if not exceeds(total_rows * bytes_per_row, max_bytes):
        return max(total_rows, 1)
    return max(1, int(max_bytes) // max(bytes_per_row, 1))


def rowwise_in_chunks(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, bytes_per_row: int, max_bytes: Optional[int]
) -> torch.Tensor:
    """``fn(x)`` for a function that treats every row of ``x`` (dimension -2) independently.

    Args:
        fn: ``(..., n, C) -> (..., n, C')``, row-wise (a token-wise MLP, LayerNorm, ...).
        x: ``(..., N, C)``.
        bytes_per_row: peak intermediate bytes ``fn`` needs per row (summed over the leading dims).
        max_bytes: budget of one chunk; ``None`` or a fitting ``x``: one call ``fn(x)``.

    Returns:
        ``(..., N, C')``, the chunks' results written into one tensor (no concatenation copy).
    """
    n = x.shape[-2]
    rows = rows_per_chunk(n, bytes_per_row, max_bytes)
    if rows >= n:
        return fn(x)
    first = fn(x[..., :rows, :])
    out = first.new_empty(*x.shape[:-1], first.shape[-1])
    out[..., :rows, :] = first
    del first
    for start in range(rows, n, rows):
        out[..., start : start + rows, :] = fn(x[..., start : start + rows, :])
    return out


def set_max_bytes(model: nn.Module, max_bytes: Optional[int]) -> nn.Module:
    """Set ``max_bytes`` on every submodule that has a bounded path (``None``: official full tensors
    everywhere; ``0``: every bounded path forced on). Returns ``model``."""
    for m in model.modules():
        if hasattr(m, "max_bytes"):
            m.max_bytes = max_bytes
    return model
