"""OpenCV baselines: DIS (Kroeger et al., ECCV 2016) and Farneback (SCIA 2003).

Both are pairwise and run on the CPU through OpenCV on grey frames; they are registered as
``opencv-dis`` (``DISOPTICAL_FLOW_PRESET_MEDIUM`` unless ``preset=`` says otherwise) and
``opencv-farneback`` (OpenCV's documented example parameters: ``pyr_scale=0.5, levels=3,
winsize=15, iterations=3, poly_n=5, poly_sigma=1.2``).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from motionflow.errors import ShapeError, UnknownNameError, require_cv2
from motionflow.types import FlowPrediction

__all__ = ["OpenCVDIS", "OpenCVFarneback"]


def _grey_frames(frames) -> np.ndarray:
    """``(B, T, 3, H, W)`` float RGB in [0, 255] -> ``(B, T, H, W)`` uint8 luma (BT.601, as OpenCV)."""
    if not isinstance(frames, torch.Tensor) or frames.ndim != 5 or frames.shape[2] != 3:
        raise ShapeError(
            "frames: expected a tensor (B, T, 3, H, W), found "
            f"{tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__}"
        )
    if frames.shape[1] < 2:
        raise ShapeError(f"frames: expected at least 2 frames (T >= 2), found T={frames.shape[1]}")
    w = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32).view(1, 1, 3, 1, 1)
    grey = (frames.detach().float().cpu() * w).sum(2)
    return grey.round().clamp(0, 255).to(torch.uint8).numpy()


class _PairwiseOpenCV:
    clip_length = 2
    name = "opencv"

    def _pair(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def flow_grey(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Flow ``(H, W, 2)`` float32 from grey frame ``a`` to ``b`` (``(H, W)`` uint8, BT.601 luma):
        the pair step without the tensor round trip (``reynolds`` calls it per pair)."""
        return self._pair(a, b)

    def __call__(self, frames) -> FlowPrediction:
        grey = _grey_frames(frames)
        start = time.perf_counter()
        bsz, t = grey.shape[:2]
        out = np.stack(
            [np.stack([self._pair(grey[b, i], grey[b, i + 1]) for i in range(t - 1)]) for b in range(bsz)]
        )  # (B, T-1, H, W, 2)
        flow = torch.from_numpy(out).permute(0, 1, 4, 2, 3).contiguous()
        return FlowPrediction(flow=flow, meta={"method": self.name, "seconds": time.perf_counter() - start})


class OpenCVDIS(_PairwiseOpenCV):
    """OpenCV Dense Inverse Search; ``preset`` is ``"ultrafast"``, ``"fast"`` or ``"medium"`` (default)."""

    name = "opencv-dis"
    _PRESETS = {"ultrafast": "DISOPTICAL_FLOW_PRESET_ULTRAFAST", "fast": "DISOPTICAL_FLOW_PRESET_FAST",
                "medium": "DISOPTICAL_FLOW_PRESET_MEDIUM"}

    def __init__(self, preset: str = "medium", device=None):
        if preset not in self._PRESETS:
            raise UnknownNameError(f"opencv-dis preset {preset!r} is unknown; valid choices: {', '.join(self._PRESETS)}")
        self.preset = preset
        cv2 = require_cv2()
        self._dis = cv2.DISOpticalFlow_create(getattr(cv2, self._PRESETS[preset]))

    def _pair(self, a, b):
        return self._dis.calc(a, b, None)


class OpenCVFarneback(_PairwiseOpenCV):
    """OpenCV Farneback polynomial-expansion flow with OpenCV's documented example parameters."""

    name = "opencv-farneback"

    def __init__(self, pyr_scale: float = 0.5, levels: int = 3, winsize: int = 15, iterations: int = 3,
                 poly_n: int = 5, poly_sigma: float = 1.2, device=None):
        self.params = (pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, 0)

    def _pair(self, a, b):
        cv2 = require_cv2()
        return cv2.calcOpticalFlowFarneback(a, b, None, *self.params)
