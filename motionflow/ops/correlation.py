"""All-pairs correlation and its multi-scale windowed lookup (RAFT, Teed & Deng, ECCV 2020).

``corr(p, q) = <f1(p), f2(q)> / sqrt(C)`` for every pixel ``p`` of frame 1 and ``q`` of frame 2. RAFT
average-pools the last two dimensions of this 4-D volume into ``num_levels`` levels and, at every
refinement iteration, reads a ``(2r+1) x (2r+1)`` window around the current estimate
``coords / 2**l`` at each level by bilinear sampling (pixel convention of :mod:`motionflow.ops.warp`:
``align_corners=True``, zero padding).

Channel order of the lookup (bit-for-bit RAFT ``core/corr.py``): RAFT builds the window offsets as
``stack(meshgrid(dy, dx), -1)`` and adds them to ``(x, y)`` coordinates, so the **x offset is the
outer index** and the y offset the inner one: level ``l``, x offset ``a``, y offset ``b`` (both in
``-r..r``) is channel ``l * (2r+1)**2 + (a + r) * (2r+1) + (b + r)``.

:class:`CorrPyramid` stores the volume (``H*W x H*W`` floats at level 0: 4.2 GB for a 1080p frame at
1/8 resolution). :class:`OnDemandCorrPyramid` stores only the pooled ``f2`` maps and computes the
same lookup from dot products with the ``(2r+2)^2`` integer neighbours of each query (bilinear
sampling and the dot product commute, and average pooling of the volume equals the dot product with
pooled ``f2``), chunked over image rows to bound memory; it equals :class:`CorrPyramid` within
float rounding. :func:`correlation_pyramid` picks one of the two (by the size of the volume unless told).
"""

from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn.functional as F

from motionflow.errors import ShapeError

__all__ = [
    "all_pairs_correlation",
    "CorrPyramid",
    "OnDemandCorrPyramid",
    "correlation_pyramid",
    "ALL_PAIRS_MAX_BYTES",
    "bilinear_sampler",
]

#: Size (bytes) of the level-0 volumes of one call (all pairs of the batch) above which
#: :func:`correlation_pyramid` builds the on-demand pyramid when not told which: 1 GiB, the volume of
#: one pair at about 1 MP (1080p: 4.3 GB per pair).
ALL_PAIRS_MAX_BYTES = 2**30


def _check_fmaps(fmap1, fmap2) -> None:
    for name, f in (("fmap1", fmap1), ("fmap2", fmap2)):
        if not isinstance(f, torch.Tensor) or f.ndim != 4:
            found = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
            raise ShapeError(f"{name}: expected a feature map of shape (B, C, H, W), found {found}")
    if fmap1.shape[:2] != fmap2.shape[:2]:
        raise ShapeError(
            f"fmap2: batch and channel sizes must match fmap1 {tuple(fmap1.shape[:2])}, found {tuple(fmap2.shape[:2])}"
        )


def _check_levels(num_levels: int, radius: int) -> None:
    if int(num_levels) < 1:
        raise ShapeError(f"num_levels: expected an integer >= 1, found {num_levels}")
    if int(radius) < 0:
        raise ShapeError(f"radius: expected an integer >= 0, found {radius}")


def _inv_sqrt_scale(dim: int, dtype: torch.dtype) -> torch.Tensor:
    # RAFT divides by torch.sqrt(torch.tensor(dim).float()): a float32 scalar (bit-exact in float32).
    return torch.sqrt(torch.tensor(float(dim), dtype=torch.float64 if dtype == torch.float64 else torch.float32))


def bilinear_sampler(img: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Sample ``img`` ``(N, C, H, W)`` at pixel coordinates ``coords`` ``(N, h, w, 2)`` (x first).

    RAFT's ``bilinear_sampler``: normalise with ``2 x / (W - 1) - 1`` and ``grid_sample`` with
    ``align_corners=True`` and zero padding. Returns ``(N, C, h, w)``. A side of size 1 divides by
    zero (as in RAFT, whose coarsest level collapses below 128 px input).
    """
    h, w = img.shape[-2:]
    xgrid, ygrid = coords.split([1, 1], dim=-1)
    xgrid = 2 * xgrid / (w - 1) - 1
    ygrid = 2 * ygrid / (h - 1) - 1
    grid = torch.cat([xgrid, ygrid], dim=-1)
    return F.grid_sample(img, grid, align_corners=True)


def all_pairs_correlation(fmap1: torch.Tensor, fmap2: torch.Tensor) -> torch.Tensor:
    """RAFT's 4-D correlation volume.

    Args:
        fmap1: ``(B, C, H1, W1)`` features of frame 1.
        fmap2: ``(B, C, H2, W2)`` features of frame 2.

    Returns:
        ``(B, H1, W1, H2, W2)`` with ``[b, i, j, k, l] = <fmap1[b, :, i, j], fmap2[b, :, k, l]> / sqrt(C)``.
    """
    _check_fmaps(fmap1, fmap2)
    b, c, h1, w1 = fmap1.shape
    h2, w2 = fmap2.shape[-2:]
    corr = torch.matmul(fmap1.reshape(b, c, h1 * w1).transpose(1, 2), fmap2.reshape(b, c, h2 * w2))
    corr = corr.div_(_inv_sqrt_scale(c, corr.dtype).to(corr.device))  # in place: one volume in memory, not two
    return corr.view(b, h1, w1, h2, w2)


def _window_delta(radius: int, dtype, device) -> torch.Tensor:
    """RAFT's window offsets ``(2r+1, 2r+1, 2)``: ``[i, j] = (d_i, d_j)`` added to ``(x, y)``."""
    d = torch.linspace(-radius, radius, 2 * radius + 1)
    dy, dx = d, d
    return torch.stack(torch.meshgrid(dy, dx, indexing="ij"), dim=-1).to(device=device, dtype=dtype)


def _check_coords(coords, b: int, h: int, w: int) -> None:
    if not isinstance(coords, torch.Tensor) or coords.ndim != 4 or coords.shape[1] != 2:
        found = tuple(coords.shape) if isinstance(coords, torch.Tensor) else type(coords).__name__
        raise ShapeError(f"coords: expected pixel coordinates of shape (B, 2, H, W), found {found}")
    if coords.shape[0] != b or tuple(coords.shape[-2:]) != (h, w):
        raise ShapeError(
            f"coords: expected shape {(b, 2, h, w)} (batch and size of fmap1), found {tuple(coords.shape)}"
        )


def _output_dtype(t: torch.Tensor) -> torch.Tensor:
    # RAFT returns .float() (its volume may be half under autocast); float64 is kept for gradchecks.
    return t if t.dtype == torch.float64 else t.float()


class CorrPyramid:
    """RAFT's ``CorrBlock``: all-pairs correlation pyramid with windowed lookup.

    Args:
        fmap1: ``(B, C, H, W)`` features of frame 1.
        fmap2: ``(B, C, H, W)`` features of frame 2.
        num_levels: pyramid levels (RAFT: 4).
        radius: window radius ``r`` (RAFT: 4), giving ``(2r+1)^2`` samples per level.

    Attributes:
        levels: list of ``num_levels`` tensors ``(B*H*W, 1, h_l, w_l)`` (level 0 = the full volume,
            then 2x2 average pooling), exactly as RAFT's ``corr_pyramid``.

    Call ``pyr(coords)`` (or ``pyr.lookup(coords)``) with ``coords`` ``(B, 2, H, W)`` pixel coordinates
    in frame 2 at level 0 (x first) to get ``(B, num_levels*(2r+1)^2, H, W)``.
    """

    def __init__(self, fmap1: torch.Tensor, fmap2: torch.Tensor, num_levels: int = 4, radius: int = 4):
        _check_fmaps(fmap1, fmap2)
        _check_levels(num_levels, radius)
        self.num_levels = int(num_levels)
        self.radius = int(radius)
        b, _, h1, w1 = fmap1.shape
        self.shape = (b, h1, w1)
        corr = all_pairs_correlation(fmap1, fmap2)
        h2, w2 = corr.shape[-2:]
        corr = corr.reshape(b * h1 * w1, 1, h2, w2)
        self.levels = [corr]
        for _ in range(self.num_levels - 1):
            corr = F.avg_pool2d(corr, 2, stride=2)
            self.levels.append(corr)

    @property
    def out_channels(self) -> int:
        return self.num_levels * (2 * self.radius + 1) ** 2

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        return self.lookup(coords)

    def lookup(self, coords: torch.Tensor) -> torch.Tensor:
        """Windowed lookup at ``coords`` ``(B, 2, H, W)`` -> ``(B, L*(2r+1)^2, H, W)`` (RAFT channel order)."""
        b, h1, w1 = self.shape
        _check_coords(coords, b, h1, w1)
        r = self.radius
        coords = coords.permute(0, 2, 3, 1)
        delta = _window_delta(r, coords.dtype, coords.device).view(1, 2 * r + 1, 2 * r + 1, 2)
        out = []
        for i, corr in enumerate(self.levels):
            centroid = coords.reshape(b * h1 * w1, 1, 1, 2) / 2**i
            sampled = bilinear_sampler(corr, centroid + delta)
            out.append(sampled.view(b, h1, w1, -1))
        return _output_dtype(torch.cat(out, dim=-1).permute(0, 3, 1, 2).contiguous())


class OnDemandCorrPyramid:
    """Memory-bounded twin of :class:`CorrPyramid`: same lookup, no ``H*W x H*W`` volume.

    Stores ``fmap1`` and ``num_levels`` average-pooled copies of ``fmap2``. A lookup needs, for each
    query pixel and level, the dot products with the ``(2r+2)^2`` integer pixels around
    ``floor(coords / 2**l)`` (zero outside the map); it combines them with the bilinear weights of the
    query's fractional part, which every integer window offset shares. Query pixels are processed in
    chunks of whole rows: a chunk's dot products come from one matrix product of its ``fmap1`` rows with
    the band of ``fmap2`` (the bounding box of the chunk's windows), then a gather. Chunks whose band
    product would exceed ``max_chunk_bytes`` are split (down to one row), so memory stays bounded for
    any flow; smooth flows give narrow bands and fast lookups.

    Args:
        fmap1, fmap2: ``(B, C, H, W)`` features.
        num_levels, radius: as :class:`CorrPyramid`.
        max_chunk_bytes: target size of one chunk's ``(pixels, band)`` product (default 32 MiB; a
            single row may exceed it when its windows span the whole map).

    Attributes:
        levels: list of pooled ``fmap2`` maps ``(B, C, h_l, w_l)``.

    Deviation: where a pooled level has a side of one pixel RAFT's sampler divides by zero (NaN);
    this lookup returns finite values there.
    """

    def __init__(
        self,
        fmap1: torch.Tensor,
        fmap2: torch.Tensor,
        num_levels: int = 4,
        radius: int = 4,
        max_chunk_bytes: int = 32 * 2**20,
    ):
        _check_fmaps(fmap1, fmap2)
        _check_levels(num_levels, radius)
        self.num_levels = int(num_levels)
        self.radius = int(radius)
        self.max_chunk_bytes = int(max_chunk_bytes)
        b, c, h1, w1 = fmap1.shape
        self.shape = (b, h1, w1)
        self.dim = c
        self.fmap1 = fmap1
        self.levels = [fmap2]
        for _ in range(self.num_levels - 1):
            fmap2 = F.avg_pool2d(fmap2, 2, stride=2)
            self.levels.append(fmap2)

    @property
    def out_channels(self) -> int:
        return self.num_levels * (2 * self.radius + 1) ** 2

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        return self.lookup(coords)

    def _window_dots(self, f1, f2p, x0, y0, row0, row1, w1):
        """Dot products ``(P, k, k)`` (x offset outer) for query rows ``row0:row1`` of one image.

        ``f2p`` is the level's ``(C, h_l + 2p, w_l + 2p)`` map zero-padded by ``p = 2r + 2``; ``x0, y0``
        are window origins in padded coordinates, already clamped so every window lies in ``f2p``.
        """
        k = 2 * self.radius + 2
        sl = slice(row0 * w1, row1 * w1)
        xs, ys = x0[sl], y0[sl]
        xlo, xhi = int(xs.min()), int(xs.max()) + k - 1
        ylo, yhi = int(ys.min()), int(ys.max()) + k - 1
        npix = (row1 - row0) * w1
        bw, bh = xhi - xlo + 1, yhi - ylo + 1
        if row1 - row0 > 1 and npix * bw * bh * f1.element_size() > self.max_chunk_bytes:
            mid = (row0 + row1) // 2
            return torch.cat(
                [self._window_dots(f1, f2p, x0, y0, row0, mid, w1), self._window_dots(f1, f2p, x0, y0, mid, row1, w1)]
            )
        band = f2p[:, ylo : yhi + 1, xlo : xhi + 1].reshape(f2p.shape[0], bh * bw)  # (C, band)
        prod = f1[sl] @ band  # (P, band)
        offs = torch.arange(k, device=xs.device)
        idx = (ys - ylo)[:, None, None] * bw + (xs - xlo)[:, None, None] + offs[None, None, :] * bw + offs[None, :, None]
        return prod.gather(1, idx.reshape(npix, k * k)).reshape(npix, k, k)

    def lookup(self, coords: torch.Tensor) -> torch.Tensor:
        """Windowed lookup at ``coords`` ``(B, 2, H, W)`` -> ``(B, L*(2r+1)^2, H, W)`` (RAFT channel order)."""
        b, h1, w1 = self.shape
        _check_coords(coords, b, h1, w1)
        r = self.radius
        n = 2 * r + 1
        c = self.dim
        dtype = torch.promote_types(self.fmap1.dtype, coords.dtype)
        scale = _inv_sqrt_scale(c, dtype).to(device=coords.device, dtype=dtype)
        f1 = self.fmap1.to(dtype).permute(0, 2, 3, 1).reshape(b, h1 * w1, c)

        out = []
        pad = 2 * r + 2
        for lvl, f2 in enumerate(self.levels):
            hl, wl = f2.shape[-2:]
            f2p = F.pad(f2.to(dtype), (pad, pad, pad, pad))  # zeros outside the map
            cen = coords / 2**lvl
            cx, cy = cen[:, 0].reshape(b, -1), cen[:, 1].reshape(b, -1)  # (B, H*W)
            x0f, y0f = torch.floor(cx), torch.floor(cy)
            ax = (cx - x0f)[..., None, None]
            ay = (cy - y0f)[..., None, None]
            # window origin (x0 - r, y0 - r) in padded coordinates; far-away windows are clamped into the
            # zero padding (all their dots are 0 either way)
            x0 = (x0f.clamp(-r - 2, wl + r) + (pad - r)).long()
            y0 = (y0f.clamp(-r - 2, hl + r) + (pad - r)).long()
            rows = 1
            while rows < h1 and (2 * rows) * w1 * wl * (2 * rows / 2**lvl + 2 * r + 2) * f1.element_size() <= self.max_chunk_bytes:
                rows *= 2
            per_batch = []
            for bi in range(b):
                dots = torch.cat(
                    [
                        self._window_dots(f1[bi], f2p[bi], x0[bi], y0[bi], s0, min(h1, s0 + rows), w1)
                        for s0 in range(0, h1, rows)
                    ]
                ) / scale
                axc, ayc = ax[bi], ay[bi]
                win = (
                    (1 - axc) * (1 - ayc) * dots[:, :-1, :-1]
                    + axc * (1 - ayc) * dots[:, 1:, :-1]
                    + (1 - axc) * ayc * dots[:, :-1, 1:]
                    + axc * ayc * dots[:, 1:, 1:]
                )  # (H*W, n, n): x offset outer, y offset inner (RAFT)
                per_batch.append(win.reshape(h1 * w1, n * n))
            out.append(torch.stack(per_batch, dim=0).view(b, h1, w1, n * n))
        return _output_dtype(torch.cat(out, dim=-1).permute(0, 3, 1, 2).contiguous())


def correlation_pyramid(
    fmap1: torch.Tensor,
    fmap2: torch.Tensor,
    num_levels: int = 4,
    radius: int = 4,
    on_demand: Optional[bool] = None,
) -> Union[CorrPyramid, OnDemandCorrPyramid]:
    """The correlation pyramid of RAFT, VideoFlow and StreamFlow from ``fmap1`` to ``fmap2`` ``(B, C, H, W)``.

    Args:
        num_levels, radius: as :class:`CorrPyramid`.
        on_demand: ``True``: :class:`OnDemandCorrPyramid`; ``False``: :class:`CorrPyramid` (the official
            all-pairs volume); ``None``: on demand when the level-0 volumes, ``B * (H*W)^2`` floats,
            exceed :data:`ALL_PAIRS_MAX_BYTES`.
    """
    if on_demand is None:
        b, _, h, w = fmap1.shape
        on_demand = b * (h * w) ** 2 * fmap1.element_size() > ALL_PAIRS_MAX_BYTES
    cls = OnDemandCorrPyramid if on_demand else CorrPyramid
    return cls(fmap1, fmap2, num_levels=num_levels, radius=radius)
