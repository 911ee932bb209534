"""Pictures: flow colour wheel, error maps, scene-flow bird's-eye views (numpy in, uint8 RGB out)."""

from .color import color_wheel_legend, flow_to_color, make_color_wheel
from .error import KITTI_ERROR_BINS, error_map
from .points import scene_flow_bev

__all__ = [
    "flow_to_color",
    "color_wheel_legend",
    "make_color_wheel",
    "error_map",
    "KITTI_ERROR_BINS",
    "scene_flow_bev",
]
