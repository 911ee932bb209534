"""matplotlib figures rendered off screen to uint8 RGB arrays (the optional ``viz`` extra).

matplotlib is imported on first use, never at package import; a missing one raises
:class:`~motionflow.errors.MissingDependencyError` naming the pip package. Figures are built with
``matplotlib.figure.Figure`` and the Agg canvas directly (no ``pyplot``: no global state, no GUI
backend, safe in worker processes).
"""

from __future__ import annotations

import numpy as np

from ..errors import require


def require_matplotlib():
    """Import matplotlib lazily (``pip install matplotlib``, or the ``viz`` extra)."""
    return require("matplotlib", "matplotlib", hint="or: pip install 'motionflow[viz]'")


def new_figure(width_in: float, height_in: float, dpi: int = 100):
    """A ``Figure`` of ``width_in`` x ``height_in`` inches with constrained layout and an Agg canvas."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_to_rgb(fig) -> np.ndarray:
    """Draw ``fig`` and return its pixels, ``(H, W, 3)`` uint8 RGB."""
    fig.canvas.draw()
    return np.ascontiguousarray(np.asarray(fig.canvas.buffer_rgba())[..., :3])
