"""Pictures: flow colour wheel, error maps, scene-flow views, video previews, Rerun recordings, report pages.

Optical-flow pictures are numpy + OpenCV (core dependencies); scene-flow figures need matplotlib (the
``viz`` extra) and Rerun recordings ``rerun-sdk`` (the ``rerun`` extra), both imported on first use.
"""

from .color import color_wheel_legend, flow_picture, flow_scale, flow_to_color, make_color_wheel
from .error import KITTI_ERROR_BINS, epe_picture, error_map, kitti_error_picture
from .points import scene_flow_picture, sweeps_picture

__all__ = [
    "flow_to_color",
    "flow_picture",
    "flow_scale",
    "color_wheel_legend",
    "make_color_wheel",
    "error_map",
    "kitti_error_picture",
    "epe_picture",
    "KITTI_ERROR_BINS",
    "scene_flow_picture",
    "sweeps_picture",
]
