"""Deterministic synthetic data with exact ground truth, for tests, the demo and training.

Two generators, both seeded and reproducible bit for bit:

* :func:`synthetic_clip` -- an image sequence of ``T`` frames made of textured layers (a background and
  a few foreground shapes) that move by known affine motions and occlude each other, with the exact
  forward flow of every consecutive pair, occlusion masks and valid masks.
* :func:`synthetic_lidar_pair` -- two sweeps of a spinning lidar over a ground plane and a few boxes
  (cars), some moving rigidly, seen from an ego vehicle that moves too, with exact per-point scene flow,
  the ego motion, ground labels and each box's true rigid motion.

Image model: layer ``l`` has a canonical texture defined in frame-0 pixel coordinates and an affine map
``A_l(t)`` (2x3, canonical -> frame t). Pixel ``p`` of frame t shows the top-most layer whose shape
contains ``A_l(t)^-1 p``. Its forward flow is ``A_l(t+1) A_l(t)^-1 p - p``; it is occluded when the
top-most layer at the target position in frame t+1 is another layer, or the target leaves the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import ShapeError
from ..geometry import apply_transform, compose_transforms, interpolate_transform, invert_transform
from ..types import FlowSample, SceneFlowSample

# --------------------------------------------------------------------------------------------------
# image sequences


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A colour texture ``(3, h, w)`` float in [0, 255] with structure at several scales."""
    out = np.zeros((3, h, w))
    for sigma, weight in ((8.0, 1.0), (3.0, 0.7), (1.2, 0.5)):
        noise = rng.standard_normal((3, h, w))
        layer = np.stack([ndimage.gaussian_filter(c, sigma, mode="wrap") for c in noise])
        layer /= layer.std() + 1e-12
        out += weight * layer
    out = (out - out.min()) / (out.max() - out.min() + 1e-12)
    return 255.0 * out


@dataclass(frozen=True)
class _Layer:
    texture: np.ndarray  # (3, th, tw) in canonical coords, offset by `origin`
    origin: np.ndarray  # (2,) canonical coords of texture pixel (0, 0): x, y
    shape: str  # "full" | "ellipse" | "rect"
    centre: np.ndarray  # (2,) canonical centre of the shape and of the motion
    radii: np.ndarray  # (2,) half-extent of the shape
    velocity: np.ndarray  # (2,) px per frame
    rotation: float  # radians per frame
    scale: float  # relative scale change per frame

    def affine(self, t: int) -> np.ndarray:
        """2x3 map canonical (frame-0) coordinates -> frame t coordinates."""
        c, s = np.cos(self.rotation * t), np.sin(self.rotation * t)
        k = (1.0 + self.scale) ** t
        lin = k * np.array([[c, -s], [s, c]])
        shift = self.centre + self.velocity * t - lin @ self.centre
        return np.concatenate([lin, shift[:, None]], axis=1)

    def inside(self, q: np.ndarray) -> np.ndarray:
        """Which canonical points ``q`` (2, ...) belong to the shape."""
        if self.shape == "full":
            return np.ones(q.shape[1:], dtype=bool)
        d = (q - self.centre.reshape(2, *([1] * (q.ndim - 1)))) / self.radii.reshape(
            2, *([1] * (q.ndim - 1))
        )
        if self.shape == "ellipse":
            return (d**2).sum(0) <= 1.0
        return (np.abs(d) <= 1.0).all(0)

    def sample(self, q: np.ndarray) -> np.ndarray:
        """Texture colours ``(3, ...)`` at canonical points ``q`` (2, ...), bilinear."""
        rows = q[1] - self.origin[1]
        cols = q[0] - self.origin[0]
        return np.stack(
            [ndimage.map_coordinates(ch, [rows, cols], order=1, mode="mirror") for ch in self.texture]
        )


def _apply(aff: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.einsum("ij,j...->i...", aff[:, :2], p) + aff[:, 2].reshape(2, *([1] * (p.ndim - 1)))


def _invert(aff: np.ndarray) -> np.ndarray:
    lin_inv = np.linalg.inv(aff[:, :2])
    return np.concatenate([lin_inv, (-lin_inv @ aff[:, 2])[:, None]], axis=1)


def _make_layers(rng: np.random.Generator, h: int, w: int, num_objects: int, max_motion: float):
    margin = int(4 * max_motion) + 16
    layers = [
        _Layer(
            texture=_texture(rng, h + 2 * margin, w + 2 * margin),
            origin=np.array([-margin, -margin], float),
            shape="full",
            centre=np.array([w / 2, h / 2]),
            radii=np.array([w, h], float),
            velocity=rng.uniform(-0.5, 0.5, 2) * max_motion,
            rotation=float(rng.uniform(-0.01, 0.01)),
            scale=float(rng.uniform(-0.01, 0.01)),
        )
    ]
    for _ in range(num_objects):
        radii = np.array([rng.uniform(0.08, 0.2) * w, rng.uniform(0.08, 0.2) * h])
        centre = np.array([rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h])
        tex_h, tex_w = int(4 * radii[1]) + 2 * margin, int(4 * radii[0]) + 2 * margin
        layers.append(
            _Layer(
                texture=_texture(rng, tex_h, tex_w),
                origin=centre - np.array([tex_w / 2, tex_h / 2]),
                shape=str(rng.choice(["ellipse", "rect"])),
                centre=centre,
                radii=radii,
                velocity=rng.uniform(-1.0, 1.0, 2) * max_motion,
                rotation=float(rng.uniform(-0.03, 0.03)),
                scale=float(rng.uniform(-0.03, 0.03)),
            )
        )
    return layers


def _top_layer(layers, t: int, p: np.ndarray) -> np.ndarray:
    """Index of the top-most layer visible at frame-t points ``p`` (2, ...)."""
    top = np.zeros(p.shape[1:], dtype=np.int64)
    for index, layer in enumerate(layers[1:], start=1):
        top[layer.inside(_apply(_invert(layer.affine(t)), p))] = index
    return top


def synthetic_clip(
    num_frames: int = 2,
    size: tuple[int, int] = (96, 128),
    seed: int = 0,
    num_objects: int = 3,
    max_motion: float = 4.0,
) -> FlowSample:
    """A clip of textured layers with exact forward flow.

    Args:
        num_frames: T >= 2 frames.
        size: ``(H, W)``.
        seed: the random seed; the same seed gives the same clip.
        num_objects: foreground shapes over the moving background.
        max_motion: scale of the per-frame translations in pixels (objects move up to about this
            much per frame, the background about half).

    Returns:
        FlowSample with ``frames (T, 3, H, W)`` uint8, ``flow (T-1, 2, H, W)`` float32 (defined at
        every pixel), ``valid`` all True, ``occluded (T-1, H, W)`` (target hidden by another layer in
        frame t+1 or outside the image), ``meta["layers"]`` (per-pixel layer index of each frame).
    """
    if num_frames < 2:
        raise ShapeError(f"synthetic_clip num_frames: expected >= 2, found {num_frames}")
    h, w = int(size[0]), int(size[1])
    if h < 8 or w < 8:
        raise ShapeError(f"synthetic_clip size: expected at least 8x8, found {size}")
    rng = np.random.default_rng(seed)
    layers = _make_layers(rng, h, w, num_objects, max_motion)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    grid = np.stack([xs, ys])

    frames, tops = [], []
    for t in range(num_frames):
        top = _top_layer(layers, t, grid)
        image = np.zeros((3, h, w))
        for index, layer in enumerate(layers):
            sel = top == index
            if sel.any():
                q = _apply(_invert(layer.affine(t)), grid[:, sel])
                image[:, sel] = layer.sample(q)
        frames.append(np.clip(np.rint(image), 0, 255).astype(np.uint8))
        tops.append(top)

    flows, occluded = [], []
    for t in range(num_frames - 1):
        flow = np.zeros((2, h, w))
        for index, layer in enumerate(layers):
            sel = tops[t] == index
            step = layer.affine(t + 1) @ np.vstack([_invert(layer.affine(t)), [0, 0, 1]])
            flow[:, sel] = _apply(step, grid[:, sel]) - grid[:, sel]
        target = grid + flow
        outside = (target[0] < 0) | (target[0] > w - 1) | (target[1] < 0) | (target[1] > h - 1)
        hidden = _top_layer(layers, t + 1, target) != tops[t]
        flows.append(flow.astype(np.float32))
        occluded.append(outside | hidden)

    return FlowSample(
        id=f"synthetic-{seed:06d}",
        frames=np.stack(frames),
        flow=np.stack(flows),
        valid=np.ones((num_frames - 1, h, w), dtype=bool),
        occluded=np.stack(occluded),
        meta={"dataset": "synthetic-flow", "seed": seed, "layers": np.stack(tops)},
    )


# --------------------------------------------------------------------------------------------------
# lidar pairs


def _yaw_transform(yaw: float, translation) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    out = np.eye(4)
    out[:3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
    out[:3, 3] = translation
    return out


def _cast_rays(origin, dirs, ground_z, boxes, max_range):
    """Nearest hit of each ray (from ``origin`` (3,), or one origin per ray (R, 3)) on the ground plane
    and the boxes.

    Returns (distance (R,), hit index (R,): -1 ground, -2 none, b >= 0 box b).
    """
    best = np.full(len(dirs), np.inf)
    label = np.full(len(dirs), -2, dtype=np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ground = (ground_z - origin[..., 2]) / dirs[:, 2]
    hit = (dirs[:, 2] < 0) & (t_ground > 0)
    best[hit] = t_ground[hit]
    label[hit] = -1
    for b, box in enumerate(boxes):
        pose = box["pose"]  # box -> world
        rot, centre = pose[:3, :3], pose[:3, 3]
        o = (origin - centre) @ rot  # rot.T @ (origin - centre)
        d = dirs @ rot  # rot.T @ dir for each row
        half = box["size"] / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = (-half - o) / d
            t2 = (half - o) / d
        t_near = np.nanmax(np.minimum(t1, t2), axis=1)
        t_far = np.nanmin(np.maximum(t1, t2), axis=1)
        ok = (t_near <= t_far) & (t_near > 0) & (t_near < best)
        best[ok] = t_near[ok]
        label[ok] = b
    label[best > max_range] = -2
    return best, label


def _sweep(rng, ego_pose, boxes, ground_z, sensor_height, beams, azimuths, max_range, noise, scan_time=0.0,
           step=None):
    """One sweep in the ego frame given by ``ego_pose`` (ego -> world).

    With ``scan_time > 0`` the sensor spins while the ego moves by ``step`` per sweep interval: the ray
    of azimuth column ``j`` is fired at ``s = j / azimuths * scan_time`` (a fraction of the interval)
    from the pose ``ego_pose @ interpolate_transform(step, s)``, and its point is returned in the ego
    frame of that moment (a raw, motion-distorted sweep). Returns ``(world, ego, label, s)``.
    """
    elev = np.deg2rad(np.linspace(-24.0, 2.0, beams))
    az = np.linspace(-np.pi, np.pi, azimuths, endpoint=False) + rng.uniform(0, 2 * np.pi / azimuths)
    el, a = np.meshgrid(elev, az, indexing="ij")
    dirs_ego = np.stack([np.cos(el) * np.cos(a), np.cos(el) * np.sin(a), np.sin(el)], -1).reshape(-1, 3)
    times = np.tile(np.arange(azimuths) / azimuths * scan_time, beams)
    poses = ego_pose if scan_time <= 0 else compose_transforms(ego_pose, interpolate_transform(step, times))
    origin_world = apply_transform(np.array([[0.0, 0.0, sensor_height]]), poses)[..., 0, :]
    dirs_world = dirs_ego @ ego_pose[:3, :3].T if scan_time <= 0 else np.einsum("rij,rj->ri", poses[:, :3, :3], dirs_ego)
    dist, label = _cast_rays(origin_world, dirs_world, ground_z, boxes, max_range)
    keep = label > -2
    dist = dist[keep] + noise * rng.standard_normal(keep.sum())
    if scan_time <= 0:
        points_world = origin_world + dirs_world[keep] * dist[:, None]
        points_ego = apply_transform(points_world, invert_transform(ego_pose))
    else:
        points_world = origin_world[keep] + dirs_world[keep] * dist[:, None]
        points_ego = apply_transform(points_world[:, None, :], invert_transform(poses[keep]))[:, 0]
    return points_world, points_ego, label[keep], times[keep]


def _make_boxes(rng, num_boxes: int, num_moving: int, max_range: float) -> list:
    """Car-sized boxes on the ground (world = first ego frame); the first ``num_moving`` move rigidly.

    Each box: ``size`` (3,), ``pose`` (box -> world), ``motion`` (its per-frame rigid motion in world
    coordinates: rotation about its centre, then a step along its heading), ``moving``.
    """
    boxes = []
    for b in range(num_boxes):
        # place boxes on a ring around the sensor, away from the ego path's first metres
        for _ in range(100):
            r, phi = rng.uniform(6.0, 0.7 * max_range), rng.uniform(-np.pi, np.pi)
            centre = np.array([r * np.cos(phi), r * np.sin(phi)])
            if all(np.linalg.norm(centre - bx["pose"][:2, 3]) > 6.0 for bx in boxes):
                break
        size = np.array([rng.uniform(3.8, 4.8), rng.uniform(1.7, 2.0), rng.uniform(1.4, 1.8)])
        pose = _yaw_transform(rng.uniform(-np.pi, np.pi), [centre[0], centre[1], size[2] / 2])
        moving = b < num_moving
        if moving:
            heading = pose[:3, :3] @ np.array([1.0, 0.0, 0.0])
            step = heading * rng.uniform(0.5, 1.5) * rng.choice([-1, 1])
            dyaw = rng.uniform(-0.1, 0.1)
            # rotate about the box centre, then translate along its heading
            motion = (
                _yaw_transform(0.0, pose[:3, 3] + step)
                @ _yaw_transform(dyaw, [0, 0, 0])
                @ _yaw_transform(0.0, -pose[:3, 3])
            )
        else:
            motion = np.eye(4)
        boxes.append({"size": size, "pose": pose, "motion": motion, "moving": moving})

    return boxes


def synthetic_lidar_pair(
    seed: int = 0,
    num_boxes: int = 6,
    num_moving: int = 3,
    ego_speed: float = 1.0,
    ego_yaw: float = 0.02,
    beams: int = 32,
    azimuths: int = 512,
    max_range: float = 40.0,
    noise: float = 0.0,
    ego_pitch: float = 0.0,
    ego_roll: float = 0.0,
    scan_time: float = 0.0,
) -> SceneFlowSample:
    """Two sweeps of a spinning lidar with exact scene flow.

    The world is a ground plane at z = 0 and ``num_boxes`` car-sized boxes standing on it;
    ``num_moving`` of them move rigidly (translation up to about 1.5 m and a yaw up to about 6 degrees
    per frame). The sensor sits 1.8 m above the ego origin. The second sweep is taken after the ego
    vehicle moved ``ego_speed`` metres forward and turned by ``ego_yaw`` radians (and pitched / rolled
    by ``ego_pitch`` / ``ego_roll`` radians: braking, bumps). Both sweeps are in their own ego frame
    (``frame="ego"``), and the azimuths are jittered so the two sweeps never sample the same surface
    points.

    ``scan_time`` (a fraction of the interval between the sweeps; 0 = an instantaneous sweep, 1 = a
    lidar that spins continuously, as driving lidars do) makes the sweeps **raw**: the sensor moves
    at constant velocity while it spins, each point is given in the ego frame of its own firing time,
    and ``meta["times1"]`` / ``meta["times2"]`` hold those times (fractions of the interval after
    each sweep's start, whose ego frame is the sweep's frame). The flow then takes each raw pc1 point
    to its surface point's position at the start of sweep 2, in sweep 2's frame (boxes stand still
    within a sweep).

    Returns:
        SceneFlowSample with pc1 (N, 3), pc2 (M, 3), flow (N, 3) (includes ego motion: static points
        satisfy ``pc1 + flow == ego_motion @ pc1``), ground1 / ground2, ``ego_motion`` (4, 4) and
        ``meta["boxes"]``: for each box ``size``, ``pose1`` (box -> ego1), ``motion`` (the box's
        rigid motion expressed in ego1 coordinates: ``p_t1_in_ego1 = motion @ p``), ``moving``;
        ``meta["instance1"]`` / ``meta["instance2"]``: box index per point (-1 for ground).
    """
    if num_moving > num_boxes:
        raise ShapeError(f"synthetic_lidar_pair num_moving: expected <= num_boxes ({num_boxes}), found {num_moving}")
    rng = np.random.default_rng(seed)
    ego1 = np.eye(4)
    ego2 = _yaw_transform(ego_yaw, [ego_speed, 0.0, 0.0])
    if ego_pitch or ego_roll:
        tilt = np.eye(4)
        cp, sp, cr, sr = np.cos(ego_pitch), np.sin(ego_pitch), np.cos(ego_roll), np.sin(ego_roll)
        tilt[:3, :3] = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]]) @ np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
        ego2 = ego2 @ tilt
    boxes = _make_boxes(rng, num_boxes, num_moving, max_range)
    boxes_t2 = [dict(bx, pose=bx["motion"] @ bx["pose"]) for bx in boxes]
    world1, pc1, lab1, times1 = _sweep(rng, ego1, boxes, 0.0, 1.8, beams, azimuths, max_range, noise, scan_time, ego2)
    _, pc2, lab2, times2 = _sweep(rng, ego2, boxes_t2, 0.0, 1.8, beams, azimuths, max_range, noise, scan_time, ego2)

    moved = world1.copy()
    for b, bx in enumerate(boxes):
        sel = lab1 == b
        moved[sel] = apply_transform(world1[sel], bx["motion"])
    ego_motion = compose_transforms(invert_transform(ego2), ego1)  # ego1 coords -> ego2 coords
    moved_in_2 = apply_transform(moved, invert_transform(ego2))  # = ego_motion @ (ego1 coordinates)
    flow = moved_in_2 - pc1

    meta_boxes = [
        {"size": bx["size"], "pose1": bx["pose"], "motion": bx["motion"], "moving": bx["moving"]}
        for bx in boxes
    ]
    return SceneFlowSample(
        id=f"synthetic-{seed:06d}",
        pc1=pc1.astype(np.float32),
        pc2=pc2.astype(np.float32),
        flow=flow.astype(np.float32),
        valid=np.ones(len(pc1), dtype=bool),
        ground1=lab1 == -1,
        ground2=lab2 == -1,
        ego_motion=ego_motion,
        frame="ego",
        meta={
            "dataset": "synthetic-lidar",
            "seed": seed,
            "boxes": meta_boxes,
            "instance1": lab1,
            "instance2": lab2,
            **({"times1": times1, "times2": times2} if scan_time > 0 else {}),
        },
    )


def synthetic_lidar_sequence(
    num_sweeps: int = 5,
    seed: int = 0,
    num_boxes: int = 12,
    num_moving: int = 2,
    ego_speed: float = 1.0,
    ego_yaw: float = 0.02,
    beams: int = 32,
    azimuths: int = 512,
    max_range: float = 40.0,
) -> dict:
    """A sequence of sweeps of the same synthetic world (as :func:`synthetic_lidar_pair`).

    The ego vehicle advances ``ego_speed`` metres and turns ``ego_yaw`` radians per sweep; moving boxes
    repeat their per-frame rigid motion. More boxes than in a pair by default: a flat ground plane alone
    does not constrain the ego motion in x and y, the static boxes do.

    Returns:
        dict with ``clouds`` (list of ``(N_t, 3)`` float32 in each sweep's ego frame), ``flows`` (list of
        ``(N_t, 3)`` exact scene flow from sweep t to t+1, in the ego-frame convention of
        :class:`SceneFlowSample`), ``poses`` (list of ego -> world ``(4, 4)``), ``ground`` and
        ``instances`` (per-point labels of each sweep), ``boxes``.
    """
    if num_sweeps < 2:
        raise ShapeError(f"synthetic_lidar_sequence num_sweeps: expected >= 2, found {num_sweeps}")
    if num_moving > num_boxes:
        raise ShapeError(f"synthetic_lidar_sequence num_moving: expected <= num_boxes ({num_boxes}), found {num_moving}")
    rng = np.random.default_rng(seed)
    boxes = _make_boxes(rng, num_boxes, num_moving, max_range)
    step = _yaw_transform(ego_yaw, [ego_speed, 0.0, 0.0])
    poses, clouds, labels, worlds = [np.eye(4)], [], [], []
    for t in range(num_sweeps):
        if t:
            poses.append(poses[-1] @ step)
        boxes_t = [dict(bx, pose=np.linalg.matrix_power(bx["motion"], t) @ bx["pose"]) for bx in boxes]
        world, ego, lab, _ = _sweep(rng, poses[t], boxes_t, 0.0, 1.8, beams, azimuths, max_range, 0.0)
        clouds.append(ego.astype(np.float32))
        labels.append(lab)
        worlds.append(world)
    flows = []
    for t in range(num_sweeps - 1):
        moved = worlds[t].copy()
        for b, bx in enumerate(boxes):
            sel = labels[t] == b
            moved[sel] = apply_transform(worlds[t][sel], bx["motion"])
        flows.append((apply_transform(moved, invert_transform(poses[t + 1])) - clouds[t]).astype(np.float32))
    return {
        "clouds": clouds,
        "flows": flows,
        "poses": poses,
        "ground": [lab == -1 for lab in labels],
        "instances": labels,
        "boxes": [{"size": b["size"], "pose": b["pose"], "motion": b["motion"], "moving": b["moving"]} for b in boxes],
    }
