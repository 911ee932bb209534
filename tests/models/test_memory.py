"""Memory-bounded paths of the networks (issue 21): same function, bounded tensors.

Each bounded path is compared with the official full-tensor path on random inputs, and
:class:`PeakTensorMemory` checks that the bounded path really never builds the big tensor. The
parity of whole networks with every bounded path forced on is in the ``test_*_parity.py`` files; the
1080p profile runs on the meta device (shapes only, no memory, no compute).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from motionflow.models.blocks import memory
from motionflow.models.blocks.gma import ContextAttention, FactoredAttention, MotionAggregation
from motionflow.models.blocks.memory import (
    PeakTensorMemory,
    rows_per_chunk,
    rowwise_in_chunks,
    set_max_bytes,
    softmax_attention,
)
from motionflow.models.blocks.twins import GlobalSubSampleAttn, LocallyGroupedAttn, TwinsBlock
from motionflow.ops import correlation
from motionflow.ops.correlation import CorrPyramid, OnDemandCorrPyramid, correlation_pyramid


def _reference_attention(q, k, v, scale):
    """``softmax(q k^T * scale) v`` in float64, written out."""
    s = torch.einsum("...id,...jd->...ij", q.double(), k.double()) * scale
    return (torch.exp(s - s.amax(-1, keepdim=True)) / torch.exp(s - s.amax(-1, keepdim=True)).sum(-1, keepdim=True)) @ v.double()


def test_softmax_attention_fused_equals_explicit_and_the_formula(monkeypatch):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, n, 16, generator=g) for n in (50, 70, 70))
    ref = _reference_attention(q, k, v, 0.25)
    explicit = softmax_attention(q, k, v, 0.25, max_bytes=None)
    fused = softmax_attention(q, k, v, 0.25, max_bytes=0)
    assert (explicit.double() - ref).abs().max() < 1e-6
    assert (fused.double() - ref).abs().max() < 1e-6
    # the tolerance separates a plausible mistake: the scale applied twice / not at all
    assert (_reference_attention(q, k, v, 0.0625) - ref).abs().max() > 1e-2
    assert (_reference_attention(q, k, v, 1.0) - ref).abs().max() > 1e-2
    # scale=None: q already scaled (GMA)
    assert (softmax_attention(0.25 * q, k, v, None, max_bytes=0).double() - ref).abs().max() < 1e-6
    # the budget decides: a matrix of 2*3*50*70 floats = 84000 bytes fits 84000, not 83999
    calls = []
    orig = memory.F.scaled_dot_product_attention
    monkeypatch.setattr(memory.F, "scaled_dot_product_attention", lambda *a, **kw: calls.append(1) or orig(*a, **kw))
    softmax_attention(q, k, v, 0.25, max_bytes=84000)
    assert calls == []
    softmax_attention(q, k, v, 0.25, max_bytes=83999)
    assert calls == [1]


def test_fused_attention_never_builds_the_score_matrix_even_for_strided_values():
    """A value tensor with non-unit stride along d made PyTorch fall back to the math path (the full
    matrix: 8.9 GB for GMA at 1080p); the fused path must stay below one score matrix."""
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(1, 1, 600, 32, generator=g) * 32**-0.5, torch.randn(1, 1, 500, 32, generator=g)
    v = torch.randn(1, 1, 32, 500, generator=g).transpose(-2, -1)  # GMA's layout
    assert v.stride(-1) != 1
    with PeakTensorMemory() as mem:
        out = softmax_attention(q, k, v, None, max_bytes=0)
    assert mem.peak < 600 * 500 * 4 // 4, mem.peak_tensors
    assert (out.double() - _reference_attention(q, k, v, 1.0)).abs().max() < 1e-6
    with PeakTensorMemory() as mem:
        softmax_attention(q, k, v, None, max_bytes=None)
    assert mem.peak >= 600 * 500 * 4  # the explicit path does build it (the tracker sees it)


@pytest.mark.parametrize(
    "rows, per_row, budget, want",
    [(10, 100, None, 10), (10, 100, 1000, 10), (10, 100, 999, 9), (10, 100, 250, 2), (10, 100, 0, 1), (10, 100, 50, 1)],
)
def test_rows_per_chunk(rows, per_row, budget, want):
    assert rows_per_chunk(rows, per_row, budget) == want


def test_rowwise_in_chunks_matches_the_whole_call_and_bounds_the_chunks():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(8, 32), nn.GELU(), nn.Linear(32, 5))
    x = torch.randn(2, 37, 8)
    seen = []

    def fn(t):
        seen.append(t.shape[-2])
        return mlp(t)

    with torch.no_grad():
        whole = mlp(x)
        chunked = rowwise_in_chunks(fn, x, bytes_per_row=100, max_bytes=500)
    assert seen == [5] * 7 + [2]
    assert chunked.shape == (2, 37, 5)
    assert (chunked - whole).abs().max() < 1e-6
    seen.clear()
    rowwise_in_chunks(fn, x, bytes_per_row=100, max_bytes=None)
    assert seen == [37]


def _twins_input(b, h, w, c, seed=0):
    return torch.randn(b, h * w, c, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("size", [(31, 23), (28, 21)], ids=["padded", "exact"])
def test_lsa_in_chunks_of_window_rows_equals_all_windows(size):
    torch.manual_seed(0)
    attn = LocallyGroupedAttn(dim=16, num_heads=2, ws=7).eval()
    x = _twins_input(2, *size, 16)
    with torch.no_grad():
        attn.max_bytes = None
        with PeakTensorMemory(attn, exclude=[x]) as whole_mem:
            whole = attn(x, size)
        attn.max_bytes = 0  # one row of windows per chunk
        with PeakTensorMemory(attn, exclude=[x]) as mem:
            chunked = attn(x, size)
        attn.max_bytes = 2 * 2**20  # everything fits: one chunk
        assert torch.equal(attn(x, size), whole)
    assert (chunked - whole).abs().max() < 1e-6
    # a chunk's qkv and scores cover one row of windows (7 image rows) of the 4-5 rows
    assert mem.peak < 0.5 * whole_mem.peak, (mem.peak, whole_mem.peak)
    # the bottom padding takes part in the attention (official): a map cut at 28 rows differs there
    if size[0] != 28:
        with torch.no_grad():
            cut = attn(x[:, : 28 * size[1]], (28, size[1]))
        assert (cut - chunked[:, : 28 * size[1]]).abs().max() < 1e-6  # rows 0..27: whole windows
        assert (attn(x[:, : 26 * size[1]], (26, size[1])) - chunked[:, : 26 * size[1]]).abs().max() > 1e-4


def test_gsa_fused_equals_explicit():
    torch.manual_seed(0)
    attn = GlobalSubSampleAttn(dim=32, num_heads=4, sr_ratio=4).eval()
    x = _twins_input(2, 18, 22, 32)
    with torch.no_grad():
        attn.max_bytes = None
        whole = attn(x, (18, 22))
        attn.max_bytes = 0
        fused = attn(x, (18, 22))
    assert (fused - whole).abs().max() < 1e-5


def test_twins_block_mlp_in_chunks_equals_the_whole():
    torch.manual_seed(0)
    blk = TwinsBlock(dim=16, num_heads=2, mlp_ratio=4.0, sr_ratio=2, ws=1).eval()
    x = _twins_input(1, 10, 12, 16)
    with torch.no_grad():
        set_max_bytes(blk, None)
        whole = blk(x, (10, 12))
        set_max_bytes(blk, 0)
        chunked = blk(x, (10, 12))
    assert blk.max_bytes == 0 and blk.attn.max_bytes == 0
    assert (chunked - whole).abs().max() < 1e-5


def test_gma_factored_attention_equals_the_matrix():
    torch.manual_seed(0)
    att = ContextAttention(dim=16, heads=1, dim_head=16)
    agg = MotionAggregation(dim=16, heads=1, dim_head=16)
    with torch.no_grad():
        agg.gamma.fill_(1.0)  # gamma is 0 at initialisation: the aggregate would equal its input
        context, motion = torch.randn(2, 16, 9, 11), torch.randn(2, 16, 9, 11)
        att.max_bytes = None
        full = att(context)
        att.max_bytes = 0
        factored = att(context)
        assert isinstance(full, torch.Tensor) and full.shape == (2, 1, 99, 99)
        assert isinstance(factored, FactoredAttention) and factored.q.shape == (2, 1, 99, 16)
        want, got = agg(full, motion), agg(factored, motion)
    assert (got - want).abs().max() < 1e-5
    assert (want - motion).abs().max() > 1e-2
    # default budget: the 99 x 99 matrix fits, the official matrix is returned
    att.max_bytes = memory.DEFAULT_MAX_BYTES
    assert isinstance(att(context), torch.Tensor)


def test_correlation_pyramid_goes_on_demand_above_the_volume_budget(monkeypatch):
    f1, f2 = torch.randn(2, 8, 16, 16), torch.randn(2, 8, 16, 16)
    volume = 2 * (16 * 16) ** 2 * 4
    assert isinstance(correlation_pyramid(f1, f2), CorrPyramid)
    monkeypatch.setattr(correlation, "ALL_PAIRS_MAX_BYTES", volume)
    assert isinstance(correlation_pyramid(f1, f2), CorrPyramid)
    monkeypatch.setattr(correlation, "ALL_PAIRS_MAX_BYTES", volume - 1)
    assert isinstance(correlation_pyramid(f1, f2), OnDemandCorrPyramid)
    assert isinstance(correlation_pyramid(f1, f2, on_demand=False), CorrPyramid)
    monkeypatch.setattr(correlation, "ALL_PAIRS_MAX_BYTES", 2**40)
    assert isinstance(correlation_pyramid(f1, f2, on_demand=True), OnDemandCorrPyramid)


def test_streamflow_encoder_and_gma_at_1080p_stay_bounded_on_the_meta_device():
    """The 1080p profile of issue 21 without the memory: the official Twins stack of 4 frames peaks at
    126 GiB (the sub-sampled attention), the bounded one below 2 GiB; GMA's 3 x 3.9 GiB matrices become
    their factors."""
    from motionflow.models.streamflow import StreamFlow

    model = StreamFlow().eval().to("meta")
    x = torch.empty(1, 4, 3, 1080, 1920, device="meta")
    with torch.no_grad(), PeakTensorMemory(model, exclude=[x]) as mem:
        f = model.fnet(x)
        attention = model.att(f[0, :3, :128])
        model.update_block.aggregator(attention, f[0, :3, 128:])
    assert isinstance(attention, FactoredAttention)
    assert mem.peak < 2 * 2**30, (mem.peak_op, mem.peak_tensors)
    set_max_bytes(model, None)
    with torch.no_grad(), PeakTensorMemory(model, exclude=[x]) as mem:
        model.att(f[0, :3, :128])
    assert mem.peak >= 3 * 32400**2 * 4
