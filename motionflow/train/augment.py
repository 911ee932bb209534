"""Sequence-consistent training augmentation: RAFT's ``FlowAugmentor`` / ``SparseFlowAugmentor`` for T frames.

What RAFT's ``core/utils/augmentor.py`` does to a pair, done here to a clip of ``T`` frames with the
**same geometric parameters for every frame and every flow** (so the flows stay exact):

1. **Photometric jitter** (torchvision ``ColorJitter``: brightness, contrast, saturation, hue, in a random
   order): with probability ``asymmetric_prob`` (0.2) every frame draws its own parameters, otherwise one
   draw is applied to all frames (RAFT jitters the stacked pair). Implemented with ``kornia.enhance``'s
   torchvision-equivalent functions (``adjust_brightness_accumulative``,
   ``adjust_contrast_with_mean_subtraction``, ``adjust_saturation_with_gray_subtraction``, ``adjust_hue``).
2. **Occlusion eraser** (probability ``eraser_prob`` = 0.5): 1-2 rectangles of 50-100 px filled with the
   frame's mean colour. RAFT erases the second frame of the pair; here every frame after the first gets
   its own rectangles (the first frame, the reference of the first flow, is never erased). Deviation for
   the three-frame VideoFlow: its reference is the centre frame, which is then erased too.
3. **Scale** (probability ``spatial_prob`` = 0.8, or always when the clip is smaller than the crop):
   ``2^U(min_scale, max_scale)``, with probability ``stretch_prob`` (0.8) an extra independent
   ``2^U(-0.2, 0.2)`` per axis (dense only), clipped so that the image stays at least one pixel larger
   than the crop. Frames and dense flows are resized bilinearly and the flow vectors multiplied by
   ``(scale_x, scale_y)``. **Sparse** ground truth (KITTI) is not interpolated: every valid vector is moved
   to its rounded scaled position and scaled, as ``SparseFlowAugmentor.resize_sparse_flow_map`` does.
4. **Flips**: horizontal with probability ``h_flip_prob`` (0.5) negates u, vertical with ``v_flip_prob``
   (0.1; 0 for sparse data, as RAFT's sparse augmentor) negates v; ``do_flip=False`` disables both
   (RAFT's KITTI stage).
5. **Crop** of ``crop_size`` at a random offset with RAFT's margins (dense: 20 px both ways; sparse:
   ``y0`` from 0 with 20 px below, 50 px on x), clipped to the image.

All randomness comes from a ``numpy.random.Generator`` passed in (the training loop seeds one per sample
from the run seed and the sample's position), so a clip is augmented identically on resume, in any
worker process, on any rank.

Published parameters per dataset (RAFT ``core/datasets.py:fetch_dataloader``) are in
:data:`AUGMENT_PRESETS`. Deviation: resizing uses ``kornia.geometry.transform.resize`` (bilinear,
``align_corners=False``) to an output size of ``round(size * scale)``, where RAFT uses
``cv2.resize(fx=, fy=)``; the sampling grid differs by less than a pixel fraction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np
import torch

from ..errors import ShapeError


@dataclass(frozen=True)
class AugmentParams:
    """Parameters of :func:`augment_clip` (defaults: RAFT's dense ``FlowAugmentor``).

    Attributes:
        crop_size: ``(H, W)`` of the output clip.
        min_scale, max_scale: log2 range of the random scale.
        do_flip: allow flips at all.
        sparse: sparse ground truth (KITTI): scatter-resize, no stretch, no vertical flip, KITTI margins.
        spatial_prob, stretch_prob, max_stretch, h_flip_prob, v_flip_prob: as in RAFT.
        brightness, contrast, saturation, hue: ColorJitter ranges (hue as a fraction of the colour circle).
        asymmetric_prob: probability of per-frame colour parameters.
        eraser_prob, eraser_bounds: occlusion eraser probability and rectangle side range (px).
        photometric: False disables colour jitter and eraser (geometry only).
    """

    crop_size: tuple = (368, 496)
    min_scale: float = -0.2
    max_scale: float = 0.5
    do_flip: bool = True
    sparse: bool = False
    spatial_prob: float = 0.8
    stretch_prob: float = 0.8
    max_stretch: float = 0.2
    h_flip_prob: float = 0.5
    v_flip_prob: float = 0.1
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.5 / 3.14
    asymmetric_prob: float = 0.2
    eraser_prob: float = 0.5
    eraser_bounds: tuple = (50, 100)
    photometric: bool = True

    def with_crop(self, crop_size) -> "AugmentParams":
        return replace(self, crop_size=tuple(int(c) for c in crop_size))


#: RAFT's dense colour ranges are the defaults; sparse (KITTI / HD1K) ones are 0.3 and hue 0.3/3.14.
_SPARSE_COLOUR = dict(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.3 / 3.14)

#: Per-dataset augmentation of RAFT's ``fetch_dataloader`` (crop sizes come from the run's config).
AUGMENT_PRESETS: dict[str, AugmentParams] = {
    "chairs": AugmentParams(min_scale=-0.1, max_scale=1.0),
    "things": AugmentParams(min_scale=-0.4, max_scale=0.8),
    "sintel": AugmentParams(min_scale=-0.2, max_scale=0.6),
    "kitti-mix": AugmentParams(min_scale=-0.3, max_scale=0.5, sparse=True, v_flip_prob=0.0, **_SPARSE_COLOUR),
    "hd1k": AugmentParams(min_scale=-0.5, max_scale=0.2, sparse=True, v_flip_prob=0.0, **_SPARSE_COLOUR),
    "kitti": AugmentParams(min_scale=-0.2, max_scale=0.4, sparse=True, do_flip=False, v_flip_prob=0.0, **_SPARSE_COLOUR),
    "default": AugmentParams(),
}


# ------------------------------------------------------------------------------------- photometric
def _jitter_params(p: AugmentParams, rng: np.random.Generator) -> tuple:
    """torchvision ColorJitter.get_params: a random order and the four factors."""
    order = rng.permutation(4)
    b = rng.uniform(max(0.0, 1 - p.brightness), 1 + p.brightness)
    c = rng.uniform(max(0.0, 1 - p.contrast), 1 + p.contrast)
    s = rng.uniform(max(0.0, 1 - p.saturation), 1 + p.saturation)
    h = rng.uniform(-p.hue, p.hue)
    return order, b, c, s, h


def _apply_jitter(images: torch.Tensor, params: tuple) -> torch.Tensor:
    """``(N, 3, H, W)`` in [0, 1] -> jittered, with kornia's torchvision-equivalent steps."""
    from kornia import enhance

    order, b, c, s, h = params
    for k in order:
        if k == 0:
            images = enhance.adjust_brightness_accumulative(images, float(b))
        elif k == 1:
            images = enhance.adjust_contrast_with_mean_subtraction(images, float(c))
        elif k == 2:
            images = enhance.adjust_saturation_with_gray_subtraction(images, float(s))
        else:
            images = enhance.adjust_hue(images, float(h) * 2 * math.pi)
    return images.clamp(0.0, 1.0)


def color_jitter(frames: torch.Tensor, p: AugmentParams, rng: np.random.Generator) -> torch.Tensor:
    """``(T, 3, H, W)`` float in [0, 255] -> jittered; one draw for all frames unless asymmetric."""
    x = frames / 255.0
    if rng.random() < p.asymmetric_prob:
        x = torch.cat([_apply_jitter(x[t : t + 1], _jitter_params(p, rng)) for t in range(x.shape[0])])
    else:
        x = _apply_jitter(x, _jitter_params(p, rng))
    # RAFT converts the jittered PIL image back to uint8
    return torch.round(x * 255.0)


def erase(frames: torch.Tensor, p: AugmentParams, rng: np.random.Generator) -> torch.Tensor:
    """Occlusion eraser on frames 1..T-1: 1-2 rectangles of the frame's mean colour each."""
    t, _, h, w = frames.shape
    lo, hi = p.eraser_bounds
    if rng.random() >= p.eraser_prob:
        return frames
    frames = frames.clone()
    for k in range(1, t):
        mean = frames[k].reshape(3, -1).mean(dim=1)
        for _ in range(int(rng.integers(1, 3))):
            x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
            dx, dy = int(rng.integers(lo, hi)), int(rng.integers(lo, hi))
            frames[k, :, y0 : y0 + dy, x0 : x0 + dx] = mean[:, None, None]
    return frames


# ------------------------------------------------------------------------------------- geometry
def _resize(x: torch.Tensor, size: tuple) -> torch.Tensor:
    from kornia.geometry.transform import resize

    return resize(x, size, interpolation="bilinear", align_corners=False, antialias=False)


def resize_dense(frames, flow, valid, scale_x: float, scale_y: float):
    """Resize frames ``(T, 3, H, W)``, dense flows ``(P, 2, H, W)`` (vectors scaled) and masks ``(P, H, W)``."""
    h, w = frames.shape[-2:]
    size = (int(round(h * scale_y)), int(round(w * scale_x)))
    frames = _resize(frames, size)
    flow = _resize(flow, size) * torch.tensor([scale_x, scale_y], dtype=flow.dtype).view(1, 2, 1, 1)
    valid = _resize(valid[:, None].float(), size)[:, 0] > 0.5
    return frames, flow, valid


def resize_sparse_flow(flow: torch.Tensor, valid: torch.Tensor, scale_x: float, scale_y: float):
    """Scatter-resize sparse flows ``(P, 2, H, W)`` / ``(P, H, W)`` (RAFT ``resize_sparse_flow_map``).

    Each valid vector at ``(x, y)`` moves to ``(round(x * sx), round(y * sy))`` and is multiplied by
    ``(sx, sy)``; targets outside ``0 < x < W'``, ``0 < y < H'`` are dropped (RAFT's strict ``> 0`` kept).
    """
    p, _, h, w = flow.shape
    h1, w1 = int(round(h * scale_y)), int(round(w * scale_x))
    out = torch.zeros((p, 2, h1, w1), dtype=flow.dtype)
    out_valid = torch.zeros((p, h1, w1), dtype=torch.bool)
    for k in range(p):
        yy, xx = torch.nonzero(valid[k], as_tuple=True)
        vec = flow[k, :, yy, xx] * torch.tensor([[scale_x], [scale_y]], dtype=flow.dtype)
        x1 = torch.round(xx.double() * scale_x).long()
        y1 = torch.round(yy.double() * scale_y).long()
        keep = (x1 > 0) & (x1 < w1) & (y1 > 0) & (y1 < h1)
        out[k, :, y1[keep], x1[keep]] = vec[:, keep]
        out_valid[k, y1[keep], x1[keep]] = True
    return out, out_valid


def spatial_transform(frames, flow, valid, p: AugmentParams, rng: np.random.Generator):
    """Scale (and stretch), flips, crop: the same parameters for every frame and flow."""
    ch, cw = p.crop_size
    h, w = frames.shape[-2:]
    min_scale = max((ch + 1) / float(h), (cw + 1) / float(w))
    scale = 2 ** rng.uniform(p.min_scale, p.max_scale)
    sx = sy = scale
    if not p.sparse and rng.random() < p.stretch_prob:
        sx *= 2 ** rng.uniform(-p.max_stretch, p.max_stretch)
        sy *= 2 ** rng.uniform(-p.max_stretch, p.max_stretch)
    sx, sy = max(sx, min_scale), max(sy, min_scale)
    if rng.random() < p.spatial_prob or h < ch or w < cw:
        if p.sparse:
            frames = _resize(frames, (int(round(h * sy)), int(round(w * sx))))
            flow, valid = resize_sparse_flow(flow, valid, sx, sy)
        else:
            frames, flow, valid = resize_dense(frames, flow, valid, sx, sy)

    if p.do_flip:
        if rng.random() < p.h_flip_prob:
            frames, flow, valid = frames.flip(-1), flow.flip(-1), valid.flip(-1)
            flow = flow * torch.tensor([-1.0, 1.0], dtype=flow.dtype).view(1, 2, 1, 1)
        if rng.random() < p.v_flip_prob:
            frames, flow, valid = frames.flip(-2), flow.flip(-2), valid.flip(-2)
            flow = flow * torch.tensor([1.0, -1.0], dtype=flow.dtype).view(1, 2, 1, 1)

    h, w = frames.shape[-2:]
    if p.sparse:
        y0 = int(rng.integers(0, h - ch + 20))
        x0 = int(rng.integers(-50, w - cw + 50))
    else:
        y0 = int(rng.integers(-20, h - ch + 20))
        x0 = int(rng.integers(-20, w - cw + 20))
    y0 = min(max(y0, 0), h - ch)
    x0 = min(max(x0, 0), w - cw)
    sl = (Ellipsis, slice(y0, y0 + ch), slice(x0, x0 + cw))
    return frames[sl], flow[sl], valid[sl]


def augment_clip(
    frames,
    flow,
    valid,
    params: AugmentParams,
    rng: np.random.Generator,
    backward: Optional[torch.Tensor] = None,
    backward_valid: Optional[torch.Tensor] = None,
):
    """Augment one clip (see the module docstring).

    Args:
        frames: ``(T, 3, H, W)`` uint8 or float in [0, 255] (numpy or torch).
        flow: ``(P, 2, H, W)`` forward flows; ``valid``: ``(P, H, W)`` bool.
        params: :class:`AugmentParams`.
        rng: the generator all random draws come from.
        backward, backward_valid: optional backward flows / masks, transformed like ``flow``.

    Returns:
        ``(frames float32 (T, 3, h, w), flow (P, 2, h, w), valid (P, h, w))`` with ``(h, w) =
        params.crop_size`` (plus ``(backward, backward_valid)`` when given).
    """
    frames = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames).float()
    flow = torch.as_tensor(flow).float()
    valid = torch.as_tensor(valid).bool()
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ShapeError(f"augment_clip frames: expected (T, 3, H, W), found {tuple(frames.shape)}")
    if flow.ndim != 4 or flow.shape[1] != 2 or flow.shape[-2:] != frames.shape[-2:]:
        raise ShapeError(f"augment_clip flow: expected (P, 2, {frames.shape[-2]}, {frames.shape[-1]}), found {tuple(flow.shape)}")
    p_fwd = flow.shape[0]
    flow = torch.nan_to_num(torch.where(valid[:, None], flow, torch.zeros(())))
    if backward is not None:
        backward_valid = torch.as_tensor(backward_valid).bool()
        backward = torch.nan_to_num(torch.where(backward_valid[:, None], torch.as_tensor(backward).float(), torch.zeros(())))
        flow = torch.cat([flow, backward])
        valid = torch.cat([valid, backward_valid])
    if params.photometric:
        frames = color_jitter(frames, params, rng)
        frames = erase(frames, params, rng)
    frames, flow, valid = spatial_transform(frames, flow, valid, params, rng)
    frames, flow, valid = frames.contiguous(), flow.contiguous(), valid.contiguous()
    if backward is not None:
        return frames, flow[:p_fwd], valid[:p_fwd], flow[p_fwd:], valid[p_fwd:]
    return frames, flow, valid
