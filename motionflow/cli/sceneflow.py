"""``motionflow sceneflow PC1 PC2 --out FLOW.npz``: scene flow between two point clouds.

The clouds are read with :func:`motionflow.io.read_points` (``.bin .npy .npz .pcd .ply .feather``). The
output ``.npz`` holds ``flow`` ``(N, 3)`` float32 aligned with the input ``pc1`` (NaN where a point was
removed by preprocessing, unless ``--fill`` says otherwise), ``pc1`` (a copy of the input), ``valid``
(finite flow), and ``method``, ``seconds``, ``iterations``, ``converged``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .options import add_progress_flags, positive_int, torch_device


def add_parser(subparsers) -> argparse.ArgumentParser:
    from motionflow.registry import SCENE_FLOW_METHODS
    from motionflow.sceneflow import DEFAULT_METHOD

    p = subparsers.add_parser("sceneflow", help="scene flow between two point clouds", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pc1", help="first sweep (.bin .npy .npz .pcd .ply .feather)")
    p.add_argument("pc2", help="second sweep")
    p.add_argument("--out", required=True, help="output .npz (keys flow, pc1, valid, ...)")
    # checked in run() (one line, exit 2), not with choices= (argparse would print the whole usage first)
    p.add_argument("--method", default=DEFAULT_METHOD,
                   help=f"one of {', '.join(sorted(SCENE_FLOW_METHODS))} (default: {DEFAULT_METHOD})")
    p.add_argument("--max-points", type=positive_int, default=None,
                   help="fit on at most N points per cloud; flow is still returned for every pc1 point")
    p.add_argument("--ground", choices=["none", "height", "ransac"], default="none",
                   help="ground removal before estimation (removed points get --fill)")
    p.add_argument("--ground-height", type=float, default=0.3, help="z threshold for --ground height (m)")
    p.add_argument("--ground-distance", type=float, default=0.2, help="plane distance for --ground ransac (m)")
    p.add_argument("--crop", type=float, nargs="+", default=None, metavar="M",
                   help="one value S: keep |x|,|y| <= S; six values: xmin ymin zmin xmax ymax zmax "
                        "(fnsf without --crop/--radius, when its distance grid over the whole clouds would be too big: "
                        "-51.2 -51.2 -3 51.2 51.2 3)")
    p.add_argument("--radius", type=float, default=None, help="keep points within this xy radius (m)")
    p.add_argument("--fill", choices=["nan", "zero", "nearest", "rigid"], default="nan",
                   help="flow of removed pc1 points (rigid = the ego flow: needs --compensate-ego, "
                        "or a method that estimates the ego motion itself: rigid, rigid+nsfp)")
    p.add_argument("--compensate-ego", action="store_true",
                   help="estimate the ego motion by robust ICP and the flow as ego flow + residual")
    p.add_argument("--ego-motion", default=None, metavar="identity|FILE",
                   help="the pc1 -> pc2 ego motion when it is known (rigid methods, --compensate-ego): identity for "
                        "sweeps already ego-compensated (as ICP-Flow's and BucketedSceneFlowEval's pairs), or a 4x4 "
                        "matrix in a .npy or text file; default: estimated from the sweeps")
    p.add_argument("--iters", type=positive_int, default=None, help="maximum optimiser iterations")
    p.add_argument("--patience", type=int, default=None, help="early-stopping patience (iterations)")
    p.add_argument("--check-every", type=positive_int, default=None, help="check the loss every K iterations")
    p.add_argument("--method-option", action="append", default=[], metavar="KEY=VALUE",
                   help="method option (repeatable), e.g. --method-option voxel_size=0.2 --method-option lr=0.01")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", type=torch_device, default="cpu", help="cpu, cuda or auto")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    p.add_argument("--key1", default=None, help="array name in an .npz pc1 (default pc1/pos1/points)")
    p.add_argument("--key2", default=None, help="array name in an .npz pc2 (default pc2/pos2/points)")
    p.add_argument("--viz", default=None, metavar="PNG",
                   help="write a picture of the flow: metres on the axes, points coloured by their motion relative "
                        "to the static world (when the ego motion is known), cluster arrows (needs matplotlib)")
    p.add_argument("--view", choices=["bev", "side"], default="bev", help="--viz: bird's-eye (default) or side view")
    p.add_argument("--rerun", default=None, metavar="FILE.rrd",
                   help="write a Rerun recording: both clouds, flow arrows, clusters (needs rerun-sdk)")
    add_progress_flags(p)
    return p


def _read(path, key, default_keys):
    from motionflow.io import read_points
    from motionflow.io.points import read_npz_key

    if key is None and str(path).endswith(".npz"):
        key = read_npz_key(path, default_keys)[0]
    points = read_points(path, key=key)
    if len(points) == 0:
        from motionflow.errors import FormatError

        raise FormatError(f"{path}: expected a point cloud, found no points (an empty file or array)")
    return points


def run(args: argparse.Namespace) -> int:
    from motionflow.errors import ShapeError, UnknownNameError
    from motionflow.io import atomic_path
    from motionflow.registry import SCENE_FLOW_METHODS
    from motionflow.sceneflow import RIGID_METHODS, estimate_scene_flow

    from .options import parse_key_values, show_progress

    if args.method not in SCENE_FLOW_METHODS:
        raise UnknownNameError(
            f"--method: unknown scene-flow method {args.method!r}; valid choices: {', '.join(sorted(SCENE_FLOW_METHODS))}"
        )
    try:
        method_options = parse_key_values(args.method_option, "--method-option")
    except ValueError as exc:
        raise ShapeError(str(exc)) from None
    if args.fill == "rigid" and not args.compensate_ego and args.method not in RIGID_METHODS:
        raise ShapeError(f"--fill rigid: method {args.method!r} needs --compensate-ego (the ego motion is the fill)")
    pc1 = _read(args.pc1, args.key1, ("pc1", "pos1", "points"))
    pc2 = _read(args.pc2, args.key2, ("pc2", "pos2", "points"))
    options: dict = dict(method_options, seed=args.seed, device=args.device, progress=show_progress(args))
    if args.threads:
        options["num_threads"] = args.threads
    if args.max_points is not None:
        options["max_points"] = args.max_points
    if args.compensate_ego:
        options["compensate_ego"] = True
    if args.ego_motion is not None:
        if not args.compensate_ego and args.method not in RIGID_METHODS:
            raise ShapeError(f"--ego-motion: method {args.method!r} uses an ego motion only with --compensate-ego")
        options["ego_motion"] = _ego_motion(args.ego_motion)
    stop = {k: v for k, v in (("max_iters", args.iters), ("patience", args.patience),
                              ("check_every", args.check_every)) if v is not None}
    if stop:
        if args.method in ("zero", "nn", "icp"):
            raise ShapeError(f"--iters/--patience/--check-every: method {args.method!r} is not iterative")
        options["stop"] = stop
    if args.ground != "none":
        options.update(ground=args.ground, ground_height=args.ground_height, ground_distance=args.ground_distance)
    if args.crop is not None:
        if len(args.crop) == 1:
            options["crop"] = args.crop[0]
        elif len(args.crop) == 6:
            options["box"] = tuple(args.crop)
        else:
            raise ShapeError(f"--crop: expected 1 or 6 values, found {len(args.crop)}")
    if args.radius is not None:
        options["radius"] = args.radius
    default_range = None
    if args.method == "fnsf" and args.crop is None and args.radius is None:
        from motionflow.sceneflow.fnsf import DEFAULT_RANGE, grid_fits

        if not grid_fits(pc1, pc2, **{k: options[k] for k in ("voxel_size", "max_cells") if k in options}):
            options["box"] = default_range = DEFAULT_RANGE
    result = estimate_scene_flow(pc1, pc2, method=args.method, fill=args.fill, **options)
    flow = result.flow.astype(np.float32)
    valid = np.isfinite(flow).all(1)
    with atomic_path(args.out) as tmp:
        with open(tmp, "wb") as fh:
            ego = result.extras.get("ego_motion")
            np.savez(fh, flow=flow, pc1=pc1.astype(np.float32), valid=valid, method=np.array(args.method),
                     seconds=np.float64(result.seconds), iterations=np.int64(result.iterations),
                     converged=np.bool_(result.converged), **({} if ego is None else {"ego_motion": np.asarray(ego)}))
    summary = dict(method=args.method, points=int(len(pc1)), valid=int(valid.sum()), seconds=round(result.seconds, 3),
                   iterations=result.iterations, converged=result.converged,
                   mean_flow_m=float(np.linalg.norm(flow[valid], axis=1).mean()) if valid.any() else None,
                   removed=result.extras.get("preprocess"), out=str(args.out))
    if default_range is not None:
        summary["crop"] = list(default_range)
    if args.viz or args.rerun:
        _visualise(args, pc1, pc2, np.where(valid[:, None], flow, np.nan), result, summary)
    from motionflow.io.strict_json import strict_dumps

    print(strict_dumps(summary))
    return 0


def _ego_motion(text: str) -> np.ndarray:
    """``--ego-motion``: ``identity`` or a file holding a rigid ``(4, 4)`` transform (``.npy``, or text)."""
    from motionflow.errors import FormatError

    if text == "identity":
        return np.eye(4)
    path = Path(text)
    try:
        T = np.load(path, allow_pickle=False) if path.suffix == ".npy" else np.loadtxt(path, ndmin=2)
    except (OSError, ValueError) as exc:
        raise FormatError(f"--ego-motion {path}: expected 'identity' or a 4x4 matrix file, could not read it ({exc})") from None
    T = np.asarray(T, dtype=np.float64)
    rigid = T.shape == (4, 4) and np.isfinite(T).all() and np.allclose(T[3], [0, 0, 0, 1])
    if rigid:
        R = T[:3, :3]
        rigid = np.allclose(R.T @ R, np.eye(3), atol=1e-4) and np.linalg.det(R) > 0
    if not rigid:
        raise FormatError(f"--ego-motion {path}: expected a rigid 4x4 transform (rotation, translation, last row 0 0 0 1), "
                          f"found an array of shape {T.shape} that is not one")
    return T


def _visualise(args, pc1, pc2, flow, result, summary: dict) -> None:
    """``--viz`` picture and ``--rerun`` recording of one estimate (motionflow.viz)."""
    from motionflow.viz.points import result_overlays

    overlays = result_overlays(result, len(pc1))
    title = f"{args.method}: {Path(args.pc1).name} -> {Path(args.pc2).name}"
    if args.viz:
        from motionflow.io import write_image
        from motionflow.viz import scene_flow_picture

        write_image(args.viz, scene_flow_picture(pc1, flow, view=args.view, title=title, **overlays))
        summary["viz"] = str(args.viz)
    if args.rerun:
        from motionflow.viz.rerun_log import log_scene_flow, recording

        with recording(args.rerun) as rec:
            log_scene_flow(rec, 0, pc1, pc2, flow, **overlays)
        summary["rerun"] = str(args.rerun)
