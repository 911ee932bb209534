"""ReynoldsFlow: a conventional flow plus an irrotational Reynolds flow, and the ReynoldsFlow+ image.

After "ReynoldsFlow: Exquisite Flow Estimation via Reynolds Transport Theorem" (Y.-H. Chen and
C.-T. Wu, arXiv 2503.04500). What the paper states: the motion has two parts, a conventional optical
flow ``v_o`` and an irrotational (curl-free) *Reynolds flow* ``v_r``, motivated by the Reynolds
transport theorem and the Helmholtz decomposition, which carries the lighting-variant residual that
brightness constancy cannot explain; the method is training-free and real-time; "ReynoldsFlow" is
the HSV picture of the flow and "ReynoldsFlow+" an RGB image whose channels hold ``|v_o|``,
``|v_r|`` and the grey frame ``f^n``. The method section's equations were not available to us, so
the following is **our reconstruction**:

1. ``v_o``: any registered conventional flow (``base=``). Default ``opencv-dis`` with OpenCV's
   FAST preset (:data:`DEFAULT_BASE`): it keeps the whole pipeline above 30 frames/s at 640x512 on
   one CPU core (``benchmarks/classical.py --reynolds``; DIS MEDIUM costs about 3x, Farneback 5x the
   DIS FAST time); ULTRAFAST is slightly faster but, without variational refinement, its flow is
   made of 16-px blocks. Pass ``base="classical"`` (or a network) for an accurate ``v_o``. Any
   brightness-constancy base reads part of a *local* lighting change as motion (README: measured).
2. The residual of brightness constancy along ``v_o`` over one frame (the material change of the
   intensity ``f``): ``eps(x) = f^{n+1}(x + v_o(x)) - f^n(x)`` (bilinear lookup; ``eps = 0`` where
   ``x + v_o`` leaves the image: nothing is known there).
3. Reynolds transport of ``f`` through a control area moving with the flow gives the continuity
   equation ``df/dt + div(f v) = 0`` for the extra velocity ``v_r`` that explains ``eps``; linearised
   around ``fbar = (f^n(x) + f^{n+1}(x + v_o)) / 2``: ``div(fbar v_r) = -eps``. By Helmholtz only the
   irrotational part of ``v_r`` enters this balance; the solenoidal part is undetermined and taken
   zero (the minimum-norm answer), so ``v_r = grad(phi)``. We drop the ``grad(fbar) . grad(phi)``
   term (first order in the brightness gradient): ``laplace(phi) = -eps / fbar``.
4. Borders are zero-flux (Neumann), so the mean of the right-hand side (a brightening of the whole
   image, which no transport inside it can explain) is removed first: a uniform gain
   ``f^{n+1} = g f^n`` gives ``eps / fbar`` constant and ``v_r = 0``. ``fbar`` is clamped below at
   ``min_brightness`` (16 grey levels, our choice) so that sensor noise in black areas does not
   dominate ``phi``.
5. ``phi`` is solved exactly for the 5-point Laplacian by the type-II cosine transform
   (:func:`poisson_neumann`); ``v_r`` at pixel centres is the average of the two face differences
   of ``phi`` around the pixel (the central difference ``(phi[j+1] - phi[j-1]) / 2`` with the edge
   value repeated), so its discrete curl is zero and the face differences have divergence equal to
   the right-hand side exactly. ``flow = v_o + v_r``.

What follows from this reading (tests check each in closed form): a textured translation gives
``v_r ~ 0``; a brightening with no motion gives ``v_r`` pointing *into* the brightening region (the
continuity equation: brightness converges where it grows), ``v_x(x) = -(1/fbar) int (eps - mean)``
in 1-D; a uniform offset ``f^{n+1} = f^n + c`` gives ``v_r = 0`` on a flat frame and, on a textured
one, a flow from bright to dark areas (the relative change ``c / fbar`` is larger where it is dark).

ReynoldsFlow+ (:func:`reynolds_rgb`, ``motionflow estimate --format reynolds-rgb``): channel 0 =
``|v_o|``, 1 = ``|v_r|``, 2 = the grey frame ``f^n`` (BT.601 luma, rounded), the two magnitudes
scaled per channel to [0, 255] (rule in :func:`reynolds_rgb`).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np
import torch

from motionflow.errors import ShapeError, UnknownNameError
from motionflow.types import FlowPrediction

__all__ = [
    "DEFAULT_BASE",
    "ReynoldsFlowResult",
    "ReynoldsFlow",
    "poisson_neumann",
    "potential_gradient",
    "transport_residual",
    "reynolds_part",
    "reynolds_flow",
    "reynolds_rgb",
    "reynolds_scales",
    "grey_frame",
]

#: the default conventional flow ``v_o``: registered name and its options
DEFAULT_BASE = ("opencv-dis", {"preset": "fast"})

_LUMA = (0.299, 0.587, 0.114)  # BT.601, as OpenCV's RGB2GRAY


@dataclass
class ReynoldsFlowResult:
    """ReynoldsFlow of one frame pair; every field a numpy array at the frame's resolution.

    Attributes:
        v_o: ``(2, H, W)`` conventional flow (x, y), px/frame.
        v_r: ``(2, H, W)`` irrotational Reynolds flow ``grad(phi)``, px/frame.
        flow: ``(2, H, W)`` ``v_o + v_r``.
        phi: ``(H, W)`` the potential (zero mean), or None (e.g. rebuilt from a video's stored fields).
        rhs: ``(H, W)`` the right-hand side solved, ``-eps / fbar`` with its mean removed, or None.
    """

    v_o: np.ndarray
    v_r: np.ndarray
    flow: np.ndarray
    phi: Optional[np.ndarray] = None
    rhs: Optional[np.ndarray] = None


# ------------------------------------------------------------------------------- plain functions
def poisson_neumann(rhs: np.ndarray) -> np.ndarray:
    """Solve ``laplace(phi) = rhs - mean(rhs)`` on an ``(H, W)`` grid with zero-flux borders.

    ``laplace`` is the 5-point stencil with the edge value repeated outside the grid (half-sample
    symmetric, Neumann); the type-II cosine transform diagonalises it with eigenvalues
    ``2 cos(pi k / N) - 2`` per axis. The mean of ``rhs`` (which no Neumann solution can absorb) is
    dropped; ``phi`` has zero mean. Float32 and float64 are kept; others become float32.
    """
    from scipy import fft

    r = np.asarray(rhs)
    if r.ndim != 2:
        raise ShapeError(f"rhs: expected (H, W), found {r.shape}")
    if r.dtype not in (np.float32, np.float64):
        r = r.astype(np.float32)
    spec = fft.dctn(r, type=2, norm="ortho", workers=1)
    spec *= _inverse_laplacian_eigenvalues(*r.shape, r.dtype)
    return fft.idctn(spec, type=2, norm="ortho", workers=1)


@functools.lru_cache(maxsize=8)
def _inverse_laplacian_eigenvalues(h: int, w: int, dtype) -> np.ndarray:
    """``1 / (2 cos(pi ky / h) + 2 cos(pi kx / w) - 4)`` ``(H, W)``, 0 for the mean (read-only, cached
    per frame size: a video solves the same grid every frame)."""
    ey = 2 * np.cos(np.pi * np.arange(h) / h) - 2
    ex = 2 * np.cos(np.pi * np.arange(w) / w) - 2
    eig = ey[:, None] + ex[None, :]
    eig[0, 0] = 1
    inv = (1 / eig).astype(dtype)
    inv[0, 0] = 0
    inv.flags.writeable = False
    return inv


def potential_gradient(phi: np.ndarray) -> np.ndarray:
    """``grad(phi)`` at pixel centres: ``(2, H, W)`` (x, y), each component the average of the two
    face differences around the pixel, i.e. ``(phi[j+1] - phi[j-1]) / 2`` with the edge value
    repeated (the border face carries no flux)."""
    h, w = phi.shape
    out = np.zeros((2, h, w), phi.dtype)
    if w > 1:
        np.subtract(phi[:, 2:], phi[:, :-2], out=out[0, :, 1:-1])
        out[0, :, 0] = phi[:, 1] - phi[:, 0]
        out[0, :, -1] = phi[:, -1] - phi[:, -2]
    if h > 1:
        np.subtract(phi[2:], phi[:-2], out=out[1, 1:-1])
        out[1, 0] = phi[1] - phi[0]
        out[1, -1] = phi[-1] - phi[-2]
    out *= 0.5
    return out


def warp_lookup(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image(x + flow(x))`` (bilinear) and where ``x + flow`` lies inside the image.

    ``image`` ``(H, W)`` float32/float64, ``flow`` ``(2, H, W)``. Returns ``(warped, inside)``.
    """
    from motionflow.errors import require_cv2

    cv2 = require_cv2()
    h, w = image.shape
    mx = np.add(flow[0], np.arange(w, dtype=np.float32)[None, :], dtype=np.float32)
    my = np.add(flow[1], np.arange(h, dtype=np.float32)[:, None], dtype=np.float32)
    warped = cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    return warped, inside


def transport_residual(grey1: np.ndarray, grey2: np.ndarray, v_o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Residual of brightness constancy along ``v_o`` and the mean brightness along it.

    Args:
        grey1, grey2: ``(H, W)`` float grey frames ``f^n``, ``f^{n+1}``.
        v_o: ``(2, H, W)`` conventional flow n -> n+1.

    Returns:
        ``(eps, fbar)``: ``eps = f^{n+1}(x + v_o) - f^n(x)`` (0 where ``x + v_o`` leaves the image)
        and ``fbar = (f^n(x) + f^{n+1}(x + v_o)) / 2`` (``f^n`` there), both ``(H, W)``.
    """
    if not np.any(v_o):
        return grey2 - grey1, 0.5 * (grey1 + grey2)
    warped, inside = warp_lookup(grey2, v_o)
    eps = np.subtract(warped, grey1, out=warped)
    np.copyto(eps, 0, where=~inside)
    return eps, grey1 + 0.5 * eps


def reynolds_part(grey1, grey2, v_o, min_brightness: float = 16.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Reynolds flow ``v_r`` that explains what ``v_o`` leaves unexplained (module docstring, 2-5).

    Args:
        grey1, grey2: ``(H, W)`` float grey frames (float64 stays float64, anything else float32).
        v_o: ``(2, H, W)`` conventional flow n -> n+1 (px/frame).
        min_brightness: lower clamp of ``fbar`` (grey levels).

    Returns:
        ``(v_r (2, H, W), phi (H, W), rhs (H, W))`` with ``laplace(phi) = rhs`` (mean removed) and
        ``v_r = potential_gradient(phi)``.
    """
    dtype = np.float64 if np.asarray(grey1).dtype == np.float64 else np.float32
    g1, g2 = np.asarray(grey1, dtype), np.asarray(grey2, dtype)
    v = np.asarray(v_o)
    if g1.ndim != 2 or g1.shape != g2.shape or v.shape != (2, *g1.shape):
        raise ShapeError(
            f"grey1, grey2, v_o: expected (H, W), (H, W) and (2, H, W) of one size, "
            f"found {g1.shape}, {g2.shape} and {v.shape}"
        )
    eps, fbar = transport_residual(g1, g2, v)
    np.maximum(fbar, dtype(min_brightness), out=fbar)
    rhs = np.divide(eps, fbar, out=eps)
    rhs -= rhs.mean()
    rhs *= -1
    phi = poisson_neumann(rhs)
    return potential_gradient(phi), phi, rhs


def grey_frame(frame) -> np.ndarray:
    """BT.601 luma ``(H, W)`` of an RGB frame ``(H, W, 3)`` or ``(3, H, W)`` (numpy or torch, values in
    [0, 255]); float64 for float64 input, else float32, not rounded."""
    x = frame.detach().cpu().numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
    if x.ndim != 3 or 3 not in (x.shape[0], x.shape[-1]):
        raise ShapeError(f"frame: expected an RGB frame (H, W, 3) or (3, H, W), found {x.shape}")
    dtype = np.float64 if x.dtype == np.float64 else np.float32
    w = np.asarray(_LUMA, dtype)
    if x.shape[-1] == 3:
        return x.astype(dtype, copy=False) @ w
    return (w @ x.reshape(3, -1).astype(dtype, copy=False)).reshape(x.shape[1:])


def _grey_u8(grey: np.ndarray) -> np.ndarray:
    """Rounded uint8 grey frame (what OpenCV flow and channel 2 of ReynoldsFlow+ take)."""
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------ the method
class ReynoldsFlow:
    """Method object of ``reynolds``: ``flow = v_o + v_r`` (module docstring).

    Args:
        base: registered conventional-flow method (name) or a method object giving ``v_o``.
        min_brightness: lower clamp of ``fbar`` in grey levels.
        device: passed to the base method when given (the Reynolds part runs on the CPU: OpenCV, SciPy).
        **base_options: options of the base factory; for the default base, :data:`DEFAULT_BASE`'s.

    Calling it on ``(B, T, 3, H, W)`` frames returns a :class:`FlowPrediction` whose ``flow`` is
    ``v_o + v_r`` and whose ``meta`` holds ``v_o`` and ``v_r`` (tensors shaped like ``flow``).
    :meth:`pair` gives the :class:`ReynoldsFlowResult` of one pair. A pairwise OpenCV base is fed the
    grey frames directly (``flow_grey``); any other base gets the RGB clip.
    """

    name = "reynolds"

    def __init__(self, base: Any = DEFAULT_BASE[0], min_brightness: float = 16.0, device=None, **base_options):
        if isinstance(base, str):
            if base == self.name:
                raise UnknownNameError("base: expected a conventional optical-flow method, found 'reynolds' itself")
            from motionflow.registry import get_optical_flow_method

            opts = dict(DEFAULT_BASE[1]) if base == DEFAULT_BASE[0] and not base_options else dict(base_options)
            if device is not None:
                opts["device"] = device
            self.base = get_optical_flow_method(base, **opts)
        elif callable(base):
            if base_options:
                raise UnknownNameError(
                    f"base options {', '.join(sorted(base_options))}: expected none with a base method object"
                )
            self.base = base
        else:
            raise ShapeError(f"base: expected a registered method name or a method object, found {type(base).__name__}")
        if not min_brightness > 0:
            raise ShapeError(f"min_brightness: expected a positive number of grey levels, found {min_brightness}")
        self.min_brightness = float(min_brightness)
        self.clip_length = int(getattr(self.base, "clip_length", 2) or 2)

    def _v_o(self, rgb: list, greys: list) -> np.ndarray:
        """``(T-1, 2, H, W)`` base flows of one clip: ``rgb`` T frames ``(H, W, 3)`` or ``(3, H, W)``
        (numpy or torch), ``greys`` their luma ``(H, W)``."""
        if hasattr(self.base, "flow_grey"):
            u8 = [_grey_u8(g) for g in greys]
            return np.stack([self.base.flow_grey(u8[t], u8[t + 1]).transpose(2, 0, 1) for t in range(len(u8) - 1)])
        chw = []
        for f in rgb:
            x = torch.as_tensor(f.detach().cpu() if isinstance(f, torch.Tensor) else np.asarray(f))
            chw.append(x if x.shape[0] == 3 and x.shape[-1] != 3 else x.permute(2, 0, 1))
        frames = torch.stack(chw).float()[None]
        flow = torch.as_tensor(self.base(frames).flow).detach().float().cpu().numpy()
        t, h, w = len(rgb), *greys[0].shape
        if flow.shape != (1, t - 1, 2, h, w):
            name = getattr(self.base, "name", type(self.base).__name__)
            raise ShapeError(f"base {name!r}: expected flow of shape {(1, t - 1, 2, h, w)}, found {flow.shape}")
        return flow[0]

    def pair(self, frame1, frame2) -> ReynoldsFlowResult:
        """ReynoldsFlow from ``frame1`` to ``frame2``: ``(H, W, 3)`` RGB arrays or ``(3, H, W)``
        tensors in [0, 255] (float64 frames keep the Reynolds part in float64)."""
        g1, g2 = grey_frame(frame1), grey_frame(frame2)
        if g1.shape != g2.shape:
            raise ShapeError(f"frame1, frame2: expected one size, found {g1.shape} and {g2.shape}")
        v_o = np.ascontiguousarray(self._v_o([frame1, frame2], [g1, g2])[0], dtype=np.float32)
        v_r, phi, rhs = reynolds_part(g1, g2, v_o, self.min_brightness)
        v_r = v_r.astype(np.float32, copy=False)
        return ReynoldsFlowResult(v_o=v_o, v_r=v_r, flow=v_o + v_r, phi=phi, rhs=rhs)

    @torch.no_grad()
    def __call__(self, frames) -> FlowPrediction:
        if not isinstance(frames, torch.Tensor) or frames.ndim != 5 or frames.shape[2] != 3 or frames.shape[1] < 2:
            raise ShapeError(
                "frames: expected a float tensor (B, T >= 2, 3, H, W), found "
                f"{tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__}"
            )
        start = time.perf_counter()
        x = frames.detach().float().cpu().numpy()
        v_o, v_r = [], []
        for clip in x:
            greys = [grey_frame(f) for f in clip]
            vo = self._v_o(list(clip), greys).astype(np.float32, copy=False)
            v_o.append(vo)
            v_r.append(np.stack([reynolds_part(greys[t], greys[t + 1], vo[t], self.min_brightness)[0]
                                 for t in range(len(greys) - 1)]))
        vo = torch.from_numpy(np.stack(v_o)).to(frames.device)
        vr = torch.from_numpy(np.stack(v_r)).to(frames.device)
        return FlowPrediction(
            flow=vo + vr, meta={"method": self.name, "v_o": vo, "v_r": vr, "seconds": time.perf_counter() - start}
        )


def reynolds_flow(frame1, frame2, base: Any = DEFAULT_BASE[0], min_brightness: float = 16.0, **base_options) -> ReynoldsFlowResult:
    """ReynoldsFlow of one frame pair (module docstring): ``v_o`` from ``base``, ``v_r = grad(phi)``.

    Args:
        frame1, frame2: ``(H, W, 3)`` RGB arrays (uint8 or float in [0, 255]) or ``(3, H, W)`` tensors.
        base: registered conventional-flow method or a method object (default :data:`DEFAULT_BASE`).
        min_brightness: lower clamp of ``fbar`` in grey levels.
        **base_options: options of the base factory (e.g. ``preset="fast"`` for ``opencv-dis``).

    Returns:
        :class:`ReynoldsFlowResult` (``v_o``, ``v_r``, ``flow`` ``(2, H, W)`` float32 px/frame).
    """
    return ReynoldsFlow(base, min_brightness, **base_options).pair(frame1, frame2)


# ---------------------------------------------------------------------------------- ReynoldsFlow+
def _magnitude_channel(v: np.ndarray, scale) -> np.ndarray:
    """``round(255 |v| / s)`` clipped to uint8; ``s`` the largest ``|v|`` for ``scale="max"``."""
    from motionflow.errors import require_cv2

    cv2 = require_cv2()
    mag = cv2.magnitude(np.ascontiguousarray(v[0], np.float32), np.ascontiguousarray(v[1], np.float32))
    top = float(mag.max()) if scale == "max" else float(scale)
    if top <= 0:
        return np.zeros(mag.shape, np.uint8)
    return cv2.convertScaleAbs(mag, alpha=255.0 / top)  # rounds and saturates to [0, 255]


def reynolds_scales(scale: Union[str, float, tuple] = "max") -> tuple:
    """The ``(s_o, s_r)`` of :func:`reynolds_rgb`'s ``scale`` (each ``"max"`` or px/frame > 0), checked.

    Raises:
        UnknownNameError: a string other than ``"max"``.
        ShapeError: not one or two values, or a value that is not a positive finite number.
    """
    if isinstance(scale, str):
        if scale != "max":
            raise UnknownNameError(f"scale: expected 'max', a number or (s_o, s_r), found {scale!r}")
        return ("max", "max")
    values = tuple(scale) if isinstance(scale, (tuple, list)) else (scale, scale)
    if len(values) != 2:
        raise ShapeError(f"scale: expected (s_o, s_r), found {len(values)} values")
    try:
        scales = tuple(float(s) for s in values)
    except (TypeError, ValueError):
        scales = (float("nan"),)
    if not all(0 < s < float("inf") for s in scales):
        raise ShapeError(f"scale: expected positive px/frame, found {scale!r}")
    return scales


def reynolds_rgb(result: ReynoldsFlowResult, frame1, scale: Union[str, float, tuple] = "max") -> np.ndarray:
    """The ReynoldsFlow+ image ``(H, W, 3)`` uint8: ``(|v_o|, |v_r|, grey f^n)``.

    Args:
        result: a :class:`ReynoldsFlowResult` (only ``v_o`` and ``v_r`` are read).
        frame1: the first frame of the pair, ``(H, W, 3)`` or ``(3, H, W)`` RGB in [0, 255].
        scale: how each magnitude channel is mapped to [0, 255]: ``round(255 |v| / s)``, clipped, so
            0 stays 0 and the channel is monotone in ``|v|``. ``"max"`` (default): ``s`` is the
            channel's largest magnitude in this frame (the whole range used; a still frame's noise
            is stretched as well). A number ``s`` (px/frame) for both channels, or ``(s_o, s_r)``:
            fixed scales, the same for every frame of a video (absolute speeds).

    Channel 2 is ``round(0.299 R + 0.587 G + 0.114 B)`` of ``frame1``, unchanged otherwise.
    """
    scales = reynolds_scales(scale)
    v_o, v_r = np.asarray(result.v_o), np.asarray(result.v_r)
    grey = grey_frame(frame1)
    if v_o.shape != (2, *grey.shape) or v_r.shape != v_o.shape:
        raise ShapeError(
            f"result, frame1: expected v_o and v_r (2, H, W) at the frame's size {grey.shape}, "
            f"found {v_o.shape} and {v_r.shape}"
        )
    return np.dstack([_magnitude_channel(v_o, scales[0]), _magnitude_channel(v_r, scales[1]), _grey_u8(grey)])
