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

:func:`set_max_bytes` sets the budget of every such layer of a network at once, and
:class:`PeakTensorMemory` measures what a call keeps alive at its peak (on the meta device too: shapes
only, so the official paths can be profiled at 1080p without the memory).
"""

from __future__ import annotations

import weakref
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = [
    "DEFAULT_MAX_BYTES",
    "exceeds",
    "softmax_attention",
    "rows_per_chunk",
    "rowwise_in_chunks",
    "set_max_bytes",
    "PeakTensorMemory",
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
        # the fused CPU kernel needs unit stride along d; otherwise PyTorch silently falls back to the
        # math path, which builds the full matrix (measured: 8.9 GB for GMA at 1080p)
        q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
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


class PeakTensorMemory(TorchDispatchMode):
    """Peak bytes of the tensors that operators create inside the context and that are alive together.

    ``with PeakTensorMemory(model) as mem: model(x)``, then ``mem.peak`` (bytes), ``mem.peak_op`` (the
    allocation that reached it) and ``mem.peak_tensors`` (the largest tensors alive at that moment, as
    ``(bytes, "module path: op shape")``). Every storage an operator creates counts until the last tensor
    using it is garbage-collected; views and in-place results add nothing; the weights and buffers of
    ``model`` and the tensors in ``exclude`` (e.g. the inputs) are not counted. Works on every device,
    including ``meta`` (shapes without memory or compute: the official paths can be profiled at 1080p).
    On ``meta`` PyTorch would decompose ``scaled_dot_product_attention`` into its math form (the full
    score matrix); inside this context it is charged as the fused CPU kernel, which is what runs on a
    real CPU. Allocations inside fused kernels (their small per-thread blocks) are not seen.
    """

    def __init__(self, model: Optional[nn.Module] = None, exclude=()):
        super().__init__()
        self.peak = 0
        self.current = 0
        self.peak_op = ""
        self.peak_tensors: list = []
        self._live: dict = {}  # storage -> [bytes, references, label]
        self._where = [""]
        self._hooks = []
        self._model = model
        self._exclude = list(exclude)
        self._sdpa = None

    @property
    def module(self) -> str:
        """Path (in ``model``) of the module running now; empty outside every module."""
        return self._where[-1]

    def _enter_module(self, name: str) -> None:
        self._where.append(name)

    def _leave_module(self) -> None:
        self._where.pop()

    def _release(self, key) -> None:
        entry = self._live.get(key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                self.current -= entry[0]
                del self._live[key]

    def __enter__(self):
        kept = list(self._exclude)
        if self._model is not None:
            kept += list(self._model.parameters()) + list(self._model.buffers())
            for name, m in self._model.named_modules():
                self._hooks.append(m.register_forward_pre_hook(lambda mod, args, n=name: self._enter_module(n)))
                self._hooks.append(m.register_forward_hook(lambda mod, args, out: self._leave_module()))
        for t in kept:
            self._live[t.untyped_storage()._cdata] = [0, float("inf"), "existing"]
        self._sdpa = F.scaled_dot_product_attention

        def sdpa(q, k, v, *args, scale=None, **kw):
            if q.device.type == "meta" and not args and not kw:
                return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, scale=scale)[0]
            return self._sdpa(q, k, v, *args, scale=scale, **kw)

        F.scaled_dot_product_attention = sdpa
        return super().__enter__()

    def __exit__(self, *exc):
        F.scaled_dot_product_attention = self._sdpa
        for h in self._hooks:
            h.remove()
        self._hooks = []
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage._cdata
            entry = self._live.get(key)
            if entry is None:
                label = f"{self._where[-1] or '-'}: {func.__name__} {tuple(t.shape)}"
                entry = self._live[key] = [storage.nbytes(), 0, label]
                self.current += entry[0]
                if self.current > self.peak:
                    self.peak, self.peak_op = self.current, label
                    self.peak_tensors = sorted(((e[0], e[2]) for e in self._live.values() if e[0]), reverse=True)[:10]
            entry[1] += 1
            weakref.finalize(t, self._release, key)
        return out
