"""Labels on raster pictures: text, colour maps, colour bars and legend panels (uint8 RGB, OpenCV).

Optical-flow pictures stay the size of the flow so that they line up with the frames; what a reader needs
to decode them (the normalisation in px, the colour bar of an error map, the KITTI legend) is drawn
into them or attached beside them with OpenCV's Hershey font (``opencv-python-headless``, a core
dependency), so none of this needs matplotlib.

Colours are RGB tuples written into RGB arrays (OpenCV does not care about channel order here).
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError, UnknownNameError, require_cv2

WHITE, BLACK, GREY = (255, 255, 255), (0, 0, 0), (128, 128, 128)

# names of OpenCV's perceptual colour maps (cv2.COLORMAP_*)
COLORMAPS = ("magma", "inferno", "viridis", "plasma", "turbo")


def font_scale(height: int) -> float:
    """Hershey font scale for a picture ``height`` px tall: text about 1/22 of it, 9 to 22 px high."""
    return float(np.clip(height / 22 / 22, 0.4, 1.0))


def text_size(text: str, scale: float) -> tuple[int, int]:
    """``(width, height)`` in px of ``text`` drawn at ``scale`` (height includes the descent)."""
    cv2 = require_cv2()
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    return w, h + base


def draw_text(image: np.ndarray, text: str, xy: tuple[int, int], scale: float, colour=BLACK, box=WHITE,
              pad: int = 2) -> np.ndarray:
    """Write ``text`` with its top-left corner at ``xy = (x, y)`` (px), on a filled ``box`` unless None.

    Draws into ``image`` (``(H, W, 3)`` uint8, C-contiguous) and returns it.
    """
    cv2 = require_cv2()
    w, h = text_size(text, scale)
    x, y = int(xy[0]), int(xy[1])
    if box is not None:
        cv2.rectangle(image, (x - pad, y - pad), (x + w + pad, y + h + pad), tuple(int(c) for c in box), -1)
    thickness = 1 if scale < 0.8 else 2
    base = int(round(h * 0.75))
    cv2.putText(image, text, (x, y + base), cv2.FONT_HERSHEY_SIMPLEX, scale, tuple(int(c) for c in colour),
                thickness, cv2.LINE_AA)
    return image


def colormap(name: str = "magma") -> np.ndarray:
    """The 256-entry colour map ``name`` (one of :data:`COLORMAPS`), ``(256, 3)`` uint8 RGB, dark to bright."""
    if name not in COLORMAPS:
        raise UnknownNameError(f"colour map: expected one of {', '.join(COLORMAPS)}, found {name!r}")
    cv2 = require_cv2()
    ramp = np.arange(256, dtype=np.uint8)[:, None]
    bgr = cv2.applyColorMap(ramp, getattr(cv2, f"COLORMAP_{name.upper()}"))
    return np.ascontiguousarray(bgr[:, 0, ::-1])


def apply_colormap(values: np.ndarray, vmax: float, name: str = "magma", vmin: float = 0.0,
                   invalid=BLACK) -> np.ndarray:
    """Colour ``values`` (any shape) linearly from ``vmin`` (darkest) to ``vmax`` (brightest, clipped).

    Returns ``values.shape + (3,)`` uint8 RGB; non-finite values get the colour ``invalid``.
    """
    if not vmax > vmin:
        raise ShapeError(f"apply_colormap: expected vmax > vmin, found vmin={vmin}, vmax={vmax}")
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    index = np.clip((np.where(finite, v, vmin) - vmin) / (vmax - vmin) * 255.0, 0, 255).round().astype(np.intp)
    out = colormap(name)[index]
    out[~finite] = invalid
    return out


def nice_ticks(vmax: float, count: int = 4) -> list[float]:
    """Round tick values ``0 = t0 < t1 < ... <= vmax`` (steps of 1, 2 or 5 times a power of ten)."""
    if not vmax > 0:
        return [0.0]
    raw = vmax / max(count, 1)
    power = 10.0 ** np.floor(np.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [float(t) for t in np.arange(0, vmax + 1e-9 * vmax, step)]


def format_number(value: float) -> str:
    """Short label for a tick or a normalisation: 3 significant digits, no trailing zeros."""
    return f"{value:.3g}"


def colour_bar(height: int, vmax: float, label: str, name: str = "magma", vmin: float = 0.0) -> np.ndarray:
    """A vertical colour bar panel ``(height, W, 3)`` uint8 (white background): the ramp of ``name`` from
    ``vmin`` (bottom) to ``vmax`` (top), tick labels to its right and ``label`` above it.

    ``W`` grows with the tick labels and ``label``. The top tick reads ``">= vmax"`` because larger values
    are drawn with the brightest colour.
    """
    scale = font_scale(max(height, 120))
    _, th = text_size("0", scale)
    top, bottom = th + 6 + th // 2, th // 2 + 4
    bar_h = max(height - top - bottom, 8)
    span = vmax - vmin
    # ticks closer than a label's height to the top one would overlap it
    gap = 1.2 * th / bar_h * span
    ticks = [t for t in nice_ticks(span) if t < span - gap] + [span]
    texts = [format_number(t + vmin) for t in ticks[:-1]] + [f">={format_number(vmax)}"]
    bar_w = max(10, th)
    gap_x = 6 + th // 2  # the tick mark must not touch its label (it read as a minus sign)
    width = max(bar_w + gap_x + 2 + max(text_size(t, scale)[0] for t in texts) + 6, text_size(label, scale)[0] + 8)
    panel = np.full((max(height, top + bar_h + bottom), width, 3), 255, np.uint8)
    ramp = apply_colormap(np.linspace(vmax, vmin, bar_h), vmax=vmax, vmin=vmin, name=name)
    panel[top:top + bar_h, 4:4 + bar_w] = ramp[:, None]
    draw_text(panel, label, (4, 2), scale, box=None)
    for t, text in zip(ticks, texts):
        y = top + int(round((1 - t / span) * (bar_h - 1)))
        panel[y, 4 + bar_w:4 + bar_w + 4] = BLACK
        draw_text(panel, text, (4 + bar_w + gap_x, y - th // 2), scale, box=None)
    return panel


def legend_panel(entries, title: str, height: int) -> np.ndarray:
    """A legend panel: ``title`` then one colour swatch and label per ``(rgb, label)`` entry, top to bottom.

    Returns ``(max(height, needed), W, 3)`` uint8 on white.
    """
    entries = list(entries)
    scale = font_scale(max(height, 160))
    _, th = text_size("0", scale)
    row = th + 4
    width = max(max(text_size(label, scale)[0] for _, label in entries) + th + 16, text_size(title, scale)[0] + 8)
    panel = np.full((max(height, (len(entries) + 1) * row + 8), width, 3), 255, np.uint8)
    draw_text(panel, title, (4, 2), scale, box=None)
    for i, (rgb, label) in enumerate(entries):
        y = (i + 1) * row + 4
        panel[y:y + th, 4:4 + th] = rgb
        draw_text(panel, label, (th + 10, y), scale, box=None)
    return panel


def hstack(*images: np.ndarray, gap: int = 4) -> np.ndarray:
    """Put pictures side by side, top-aligned, on white, ``gap`` px apart."""
    height = max(im.shape[0] for im in images)
    width = sum(im.shape[1] for im in images) + gap * (len(images) - 1)
    out = np.full((height, width, 3), 255, np.uint8)
    x = 0
    for im in images:
        out[: im.shape[0], x:x + im.shape[1]] = im
        x += im.shape[1] + gap
    return out
