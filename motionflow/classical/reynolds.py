"""Reynolds flow: a training-free motion feature from the Reynolds transport theorem.

After "ReynoldsFlow: Exquisite Flow Estimation via Reynolds Transport Theorem" (Chen et al., 2025).
The idea taken from the paper: treat image brightness ``I`` as a conserved quantity transported by
the motion field ``v``. The Reynolds transport theorem for any control area ``A`` gives

    d/dt int_A I dA = int_A dI/dt dA + oint_{dA} I (v . n) ds = 0
    =>  dI/dt + div(I v) = 0                      (continuity equation; brightness constancy is the
                                                   special case div v = 0)

so the brightness *flux* ``q = I v`` must explain the temporal change: ``div q = -I_t``. Our
formulation (a deviation: the paper's exact closed form and its ReynoldsFlow+ encoding were not
available to us) takes the minimum-energy flux, which is irrotational, ``q = grad(phi)``, so
``laplace(phi) = -I_t``: a Poisson equation solved exactly with Neumann borders by a cosine
transform (mirror-extended FFT, torch, any device). The velocity is ``v = q / (I + kappa)``.

This is a *motion feature* for downstream networks (where things move, in which direction, how
strongly), not an end-point-accurate flow: the flux is spread over the whole image like a potential
field and its scale is not in pixels. Use ``classical`` for accurate flow.

RGB encoding (:func:`reynolds_to_rgb`, ``--format reynolds-rgb``): R and G carry the x and y
velocity mapped to ``128 + 127 * v / v_max`` (``v_max`` the 99th percentile speed of the frame),
B the grey frame t, so a detector sees motion and appearance in one 3-channel image.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from motionflow.errors import ShapeError
from motionflow.types import FlowPrediction

__all__ = ["poisson_neumann", "reynolds_flow", "reynolds_to_rgb", "ReynoldsFlow"]


def poisson_neumann(rhs: torch.Tensor) -> torch.Tensor:
    """Solve ``laplace(phi) = rhs`` on ``(B, C, H, W)`` with zero-flux (Neumann) borders.

    The 5-point Laplacian is diagonalised by the cosine transform; it is computed as the FFT of the
    mirror-extended ``(2H, 2W)`` field. The mean of ``rhs`` (which no Neumann solution can absorb) is
    removed first; ``phi`` has zero mean.
    """
    if rhs.ndim != 4:
        raise ShapeError(f"rhs: expected (B, C, H, W), found {tuple(rhs.shape)}")
    h, w = rhs.shape[-2:]
    r = rhs - rhs.mean(dim=(-2, -1), keepdim=True)
    ext = torch.cat([r, r.flip(-1)], -1)
    ext = torch.cat([ext, ext.flip(-2)], -2)  # (B, C, 2H, 2W), even symmetric
    spec = torch.fft.rfft2(ext.double())
    ky = torch.arange(2 * h, device=rhs.device, dtype=torch.float64)
    kx = torch.arange(w + 1, device=rhs.device, dtype=torch.float64)
    eig = (2 * torch.cos(2 * math.pi * ky / (2 * h)) - 2)[:, None] + (2 * torch.cos(2 * math.pi * kx / (2 * w)) - 2)[None]
    eig[0, 0] = 1.0
    spec = spec / eig
    spec[..., 0, 0] = 0
    phi = torch.fft.irfft2(spec, s=(2 * h, 2 * w))[..., :h, :w]
    return phi.to(rhs.dtype)


def reynolds_flow(frame1: torch.Tensor, frame2: torch.Tensor, sigma: float = 1.5, kappa: float = 16.0) -> torch.Tensor:
    """Reynolds flow between two frames.

    Args:
        frame1, frame2: ``(B, 3, H, W)`` or ``(B, 1, H, W)`` in [0, 255].
        sigma: Gaussian pre-smoothing of the frames (pixels).
        kappa: brightness offset that keeps ``v = q / (I + kappa)`` finite in dark areas.

    Returns:
        ``(B, 2, H, W)`` velocity field (x, y), a motion feature in brightness-flux units.
    """
    if frame1.shape != frame2.shape or frame1.ndim != 4 or frame1.shape[1] not in (1, 3):
        raise ShapeError(
            f"frame1, frame2: expected two (B, 3|1, H, W) tensors of one shape, found {tuple(frame1.shape)} and {tuple(frame2.shape)}"
        )
    from kornia.filters import gaussian_blur2d

    def grey(x):
        if x.shape[1] == 3:
            wts = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            x = (x * wts).sum(1, keepdim=True)
        k = 2 * int(math.ceil(3 * sigma)) + 1
        return gaussian_blur2d(x.float(), (k, k), (sigma, sigma), border_type="replicate")

    i1, i2 = grey(frame1), grey(frame2)
    phi = poisson_neumann(-(i2 - i1))
    pad = F.pad(phi, (1, 1, 1, 1), mode="replicate")
    qx = 0.5 * (pad[..., 1:-1, 2:] - pad[..., 1:-1, :-2])
    qy = 0.5 * (pad[..., 2:, 1:-1] - pad[..., :-2, 1:-1])
    brightness = 0.5 * (i1 + i2) + kappa
    return torch.cat([qx, qy], 1) / brightness


def reynolds_to_rgb(flow, frame=None) -> np.ndarray:
    """Encode a Reynolds flow ``(2, H, W)`` (or ``(H, W, 2)``) as ``(H, W, 3)`` uint8 RGB.

    R, G = ``128 + 127 * (u, v) / v_max`` clipped (``v_max`` = 99th percentile speed); B = the grey
    ``frame`` ``(H, W, 3)`` / ``(3, H, W)`` RGB uint8 if given, else the speed ``255 * |v| / v_max``.
    """
    f = flow.detach().cpu().numpy() if isinstance(flow, torch.Tensor) else np.asarray(flow)
    if f.ndim == 3 and f.shape[0] == 2 and f.shape[-1] != 2:
        f = f.transpose(1, 2, 0)
    if f.ndim != 3 or f.shape[-1] != 2:
        raise ShapeError(f"flow: expected (2, H, W) or (H, W, 2), found {f.shape}")
    speed = np.linalg.norm(f, axis=-1)
    vmax = max(float(np.percentile(speed, 99)), 1e-6)
    rg = np.clip(128 + 127 * f / vmax, 0, 255)
    if frame is not None:
        img = frame.detach().cpu().numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
        if img.ndim == 3 and img.shape[0] == 3 and img.shape[-1] != 3:
            img = img.transpose(1, 2, 0)
        if img.shape[:2] != f.shape[:2]:
            raise ShapeError(f"frame: expected {f.shape[:2]} pixels like the flow, found {img.shape[:2]}")
        blue = img[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    else:
        blue = np.clip(255 * speed / vmax, 0, 255)
    return np.dstack([rg, blue]).round().astype(np.uint8)


class ReynoldsFlow:
    """Method object of ``reynolds`` (motion feature; see the module docstring)."""

    name = "reynolds"
    clip_length = 2

    def __init__(self, sigma: float = 1.5, kappa: float = 16.0, device=None):
        self.sigma, self.kappa = sigma, kappa
        self.device = torch.device(device) if device is not None else None

    @torch.no_grad()
    def __call__(self, frames) -> FlowPrediction:
        if not isinstance(frames, torch.Tensor) or frames.ndim != 5 or frames.shape[2] != 3 or frames.shape[1] < 2:
            raise ShapeError(
                "frames: expected a float tensor (B, T >= 2, 3, H, W), found "
                f"{tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__}"
            )
        x = frames.to(device=self.device or frames.device, dtype=torch.float32)
        start = time.perf_counter()
        flows = [reynolds_flow(x[:, t], x[:, t + 1], self.sigma, self.kappa) for t in range(x.shape[1] - 1)]
        return FlowPrediction(flow=torch.stack(flows, 1), meta={"method": self.name, "seconds": time.perf_counter() - start})
