"""The unit of every metric motionflow reports (DESIGN.md section 4), to print beside its value.

Optical flow: ``epe*`` in px (end-point error, per split and speed bin), ``px1 px3 px5`` as fractions of
the valid pixels, ``fl_*`` (KITTI 2015 Fl-all / Fl-bg / Fl-fg) and ``out2 .. out5`` (KITTI 2012) in percent. Scene flow: ``epe3d``, the three-way EPE and its
parts and the bucketed static EPE in metres, ``acc3d_strict acc3d_relax outliers`` as fractions,
``angle_error`` in radians, the bucketed dynamic normalized EPE as a ratio (EPE over speed).
"""

from __future__ import annotations

from ..errors import UnknownNameError

KINDS = ("optical", "scene")


def metric_unit(name: str, kind: str) -> str:
    """Unit of metric ``name`` (``"px"``, ``"%"``, ``"fraction"``, ``"m"``, ``"rad"`` or ``"ratio"``).

    Args:
        name: metric name as reported, with any split suffix (``epe_noc``, ``fl_all_occ``,
            ``bucketed_dynamic_norm_epe/CAR``).
        kind: ``"optical"`` or ``"scene"``.
    """
    if kind not in KINDS:
        raise UnknownNameError(f"metric kind: expected one of {', '.join(KINDS)}, found {kind!r}")
    if kind == "optical":
        if name.startswith(("fl", "out")):
            return "%"
        return "fraction" if name.startswith("px") else "px"
    if name.startswith(("acc3d", "outliers")):
        return "fraction"
    if name.startswith("angle"):
        return "rad"
    if name.startswith("bucketed_dynamic_norm"):
        return "ratio"
    return "m"
