"""Scene-flow runtime benchmark on the real Argoverse 2 sample pair (../shared/data).

One process, one pair, every method on the same preprocessed clouds:

* input: the AV2 sample, ego-compensated with the log's poses (GT flow = object motion only), ground
  removed (the loader's ground labels, else ``z <= 0.3``), ``|x|, |y| <= 35 m`` and ``z <= --zmax``
  (4 m: NSFP's Argoverse preprocessing keeps z <= 4 m; it also bounds FNSF's distance grid);
* sizes: a random 8192-point subsample of each cloud (EPE on those pc1 points) and all points;
* methods: ``zero``, ``nn``, faithful ``nsfp`` (5000 iterations, patience 100, checked every step),
  faithful ``fnsf`` (0.1 m grid, patience 10), and the faster modes below;
* prints EPE3D (m, mean over valid pc1 points; also split into dynamic ``||gt|| >= 0.05 m`` and static
  points, the AV2 threshold), wall and CPU seconds (the ratio uses CPU seconds of this process: on a
  shared machine wall time depends on the neighbours' load; run with ``--threads 1`` so CPU = work), and time ratio ``nsfp seconds / method seconds``.

``--synthetic SEED ...`` runs the same table on generated pairs instead
(:func:`motionflow.datasets.synthetic.synthetic_lidar_pair`, ``--beams``/``--azimuths`` sensor; ground
removed; compensated with the exact ego motion, so the GT is the boxes' motion only).

Usage::

    python benchmarks/sceneflow.py [--sizes 8192 all] [--threads 1] [--json OUT.json]
    python benchmarks/sceneflow.py --synthetic 0 1 2 --sizes all --only zero nn nsfp fnsf [--beams 64 --azimuths 2048]
    python benchmarks/sceneflow.py --ego [--synthetic 0 1] [--nsfp-seeds 5] --threads 1   # issue 16: ego / rigid / nsfp seeds
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("MOTIONFLOW_SAMPLE_DATA", ROOT.parent / "shared" / "data")) / "av2_sceneflow_7fab2350"


def load_pair(root: Path, zmax: float, half: float = 35.0):
    from motionflow.datasets import get_dataset
    from motionflow.sceneflow.preprocess import preprocess_pair

    s = get_dataset("av2", str(root), compensate_ego=True)[0]
    g1 = s.ground1 if s.ground1 is not None else s.pc1[:, 2] <= 0.3
    g2 = s.ground2 if s.ground2 is not None else s.pc2[:, 2] <= 0.3
    box = (-half, -half, -np.inf, half, half, zmax)
    prep = preprocess_pair(np.where(g1[:, None], np.nan, s.pc1), np.where(g2[:, None], np.nan, s.pc2), box=box)
    gt = s.flow[prep.keep1]
    valid = s.valid[prep.keep1] & np.isfinite(gt).all(1)
    return prep.pc1, prep.pc2, gt, valid


def load_synthetic(seed: int, beams: int, azimuths: int):
    """A generated pair, ground removed, pc1 moved by the exact ego motion (GT = object motion only)."""
    from motionflow.datasets.synthetic import synthetic_lidar_pair
    from motionflow.ops.geometry import apply_transform

    s = synthetic_lidar_pair(seed=seed, beams=beams, azimuths=azimuths)
    k1, k2 = ~s.ground1, ~s.ground2
    pc1 = apply_transform(s.pc1[k1].astype(np.float64), s.ego_motion).numpy().astype(np.float32)
    gt = (s.pc1[k1] + s.flow[k1] - pc1).astype(np.float32)
    return pc1, s.pc2[k2], gt, np.ones(len(pc1), dtype=bool)


def methods(size_label: str, nsfp_iters: int):
    """(label, registry name, options). ``check_every`` > 1 avoids a host sync per step."""
    faithful_nsfp = dict(stop=dict(max_iters=nsfp_iters, min_delta=1e-4, patience=100, check_every=1))
    out = [
        ("zero", "zero", {}),
        ("nn", "nn", {}),
        ("nsfp", "nsfp", faithful_nsfp),
        ("fnsf", "fnsf", dict(stop=dict(max_iters=5000, min_delta=1e-3, patience=10, check_every=1))),
        ("fnsf-fit8192 (fit 8192 points, eval all, check every 10)", "fnsf",
         dict(max_points=8192, stop=dict(max_iters=5000, min_delta=1e-3, patience=10, check_every=10))),
        ("fnsf-grid0.2 (0.2 m grid, fit 8192, check every 10)", "fnsf",
         dict(voxel_size=0.2, max_points=8192, stop=dict(max_iters=5000, min_delta=1e-3, patience=10, check_every=10))),
        ("nsfp-fit2048 (fit 2048 points, eval all, check every 10)", "nsfp",
         dict(max_points=2048, stop=dict(max_iters=nsfp_iters, min_delta=1e-4, patience=100, check_every=10))),
        # the input is already ego-compensated and ground-free (load_pair): identity ego motion, no second ground cut
        ("rigid", "rigid", dict(ego_motion=np.eye(4), ground_removal="none")),
        ("rigid+nsfp", "rigid+nsfp", dict(ego_motion=np.eye(4), ground_removal="none")),
    ]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--sizes", nargs="+", default=["8192", "all"])
    ap.add_argument("--zmax", type=float, default=4.0)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--nsfp-iters", type=int, default=5000,
                    help="cap on nsfp iterations (5000 = faithful; a lower cap makes the speed-ups lower bounds)")
    ap.add_argument("--only", nargs="*", default=None, help="run only methods whose label starts with these")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--synthetic", type=int, nargs="+", default=None, metavar="SEED",
                    help="run on these generated pairs instead of the AV2 sample")
    ap.add_argument("--beams", type=int, default=32, help="--synthetic sensor beams")
    ap.add_argument("--azimuths", type=int, default=512, help="--synthetic sensor azimuth steps")
    add_learned_arguments(ap)
    add_ego_arguments(ap)
    args = ap.parse_args(argv)
    if args.learned:
        return learned_main(args)
    if args.ego:
        return ego_main(args)
    if args.synthetic is None and not args.data.exists():
        print(f"AV2 sample not found at {args.data}", file=sys.stderr)
        return 1
    if args.threads:
        torch.set_num_threads(args.threads)
    from motionflow.registry import get_scene_flow_method

    if args.synthetic is None:
        pairs = [("av2", load_pair(args.data, args.zmax))]
    else:
        pairs = [(f"synthetic-{seed}", load_synthetic(seed, args.beams, args.azimuths)) for seed in args.synthetic]
    # warm up imports / allocator (torch.optim's first import alone takes seconds)
    get_scene_flow_method("nsfp", stop=dict(max_iters=2))(pairs[0][1][0][:64], pairs[0][1][1][:64])
    rows = []
    for pair_name, (pc1_all, pc2_all, gt_all, valid_all) in pairs:
        print(f"{pair_name} pair after preprocessing: pc1 {len(pc1_all)}, pc2 {len(pc2_all)} points; "
              f"torch threads {torch.get_num_threads()}")
        rows += run_pair(pair_name, pc1_all, pc2_all, gt_all, valid_all, args, get_scene_flow_method)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


def run_pair(pair_name, pc1_all, pc2_all, gt_all, valid_all, args, get_scene_flow_method) -> list:
    rows = []
    for size in args.sizes:
        rng = np.random.default_rng(0)
        if size == "all":
            pc1, pc2, gt, valid = pc1_all, pc2_all, gt_all, valid_all
        else:
            n = int(size)
            i1 = np.sort(rng.choice(len(pc1_all), min(n, len(pc1_all)), replace=False))
            i2 = np.sort(rng.choice(len(pc2_all), min(n, len(pc2_all)), replace=False))
            pc1, pc2, gt, valid = pc1_all[i1], pc2_all[i2], gt_all[i1], valid_all[i1]
        ref = None
        for label, name, opts in methods(size, args.nsfp_iters):
            if args.only and not any(label.startswith(o) for o in args.only):
                continue
            est = get_scene_flow_method(name, **opts)
            t, c = time.perf_counter(), time.process_time()
            res = est(pc1, pc2)
            sec, cpu = time.perf_counter() - t, time.process_time() - c
            err = np.linalg.norm(res.flow - gt, axis=1)
            dyn = valid & (np.linalg.norm(gt, axis=1) >= 0.05)  # AV2: >= 0.05 m per 0.1 s sweep pair
            epe = float(err[valid].mean())
            epe_dyn = float(err[dyn].mean()) if dyn.any() else float("nan")
            epe_sta = float(err[valid & ~dyn].mean())
            if label == "nsfp":
                ref = cpu
            row = dict(pair=pair_name, size=size, points=len(pc1), method=label, epe3d=epe, epe_dynamic=epe_dyn,
                       epe_static=epe_sta, dynamic_points=int(dyn.sum()), seconds=sec, cpu_seconds=cpu, iterations=res.iterations,
                       ratio_vs_nsfp=(ref / cpu) if ref else None)
            rows.append(row)
            ratio = f"{ref / cpu:7.1f}x" if ref else "      -"
            print(f"{size:>5} {label:<52} EPE3D {epe:.4f} m (dynamic {epe_dyn:.4f}, static {epe_sta:.4f})  wall {sec:7.1f} s  cpu {cpu:7.1f} s  iters {res.iterations:5d}  "
                  f"speed-up vs nsfp {ratio}", flush=True)
    return rows



# --- learned correspondences (issue 17): scoop with FPFH / FLOT / trained features, and flot ------------------


def add_learned_arguments(ap) -> None:
    ap.add_argument("--learned", action="store_true",
                    help="the learned-correspondence table instead: scoop (FPFH, FLOT-initialised and trained "
                         "features) and flot on raw synthetic pairs (--synthetic SEEDS, default 1000-1004) and "
                         "the raw AV2 pair (ground removed, |x|,|y| <= 35 m, --learned-points per cloud)")
    ap.add_argument("--flot-dir", type=Path, default=DEFAULT_DATA.parent / "flot_pretrained",
                    help="folder with FLOT's model_2048.tar / model_8192.tar")
    ap.add_argument("--scoop-checkpoint", type=Path, default=None,
                    help="a trained scoop checkpoint (motionflow train --model scoop: RUN/model.pth)")
    ap.add_argument("--trained-points", type=int, default=2048,
                    help="feature chunk size of the trained scoop checkpoint (its training --model_options points)")
    ap.add_argument("--learned-points", type=int, default=8192,
                    help="random points per AV2 cloud for the learned table (the refinement of the FPFH mode runs on all)")


def load_raw_synthetic(seed: int, beams: int, azimuths: int):
    """A generated pair as recorded (flow = ego + object motion), ground removed; dynamic = moved by >= 5 cm
    more than the ego motion explains."""
    from motionflow.datasets.synthetic import synthetic_lidar_pair
    from motionflow.geometry import apply_transform

    s = synthetic_lidar_pair(seed=seed, beams=beams, azimuths=azimuths)
    k1, k2 = ~s.ground1, ~s.ground2
    pc1, gt = s.pc1[k1], s.flow[k1]
    ego = apply_transform(pc1.astype(np.float64), s.ego_motion) - pc1
    return pc1, s.pc2[k2], gt, np.ones(len(pc1), dtype=bool), np.linalg.norm(gt - ego, axis=1) >= 0.05


def load_raw_av2(root: Path, zmax: float, points: int, half: float = 35.0):
    """The AV2 sample as recorded (flow = ego + object motion), ground removed (the loader's labels),
    ``|x|, |y| <= 35 m``, ``z <= zmax``, ``points`` random points per cloud."""
    from motionflow.datasets import get_dataset
    from motionflow.geometry import apply_transform
    from motionflow.sceneflow.preprocess import preprocess_pair

    s = get_dataset("av2", str(root))[0]
    g1 = s.ground1 if s.ground1 is not None else s.pc1[:, 2] <= 0.3
    g2 = s.ground2 if s.ground2 is not None else s.pc2[:, 2] <= 0.3
    prep = preprocess_pair(np.where(g1[:, None], np.nan, s.pc1), np.where(g2[:, None], np.nan, s.pc2),
                           box=(-half, -half, -np.inf, half, half, zmax), max_points=points, seed=0)
    gt = s.flow[prep.keep1]
    valid = s.valid[prep.keep1] & np.isfinite(gt).all(1)
    ego = apply_transform(prep.pc1.astype(np.float64), s.ego_motion) - prep.pc1
    return prep.pc1, prep.pc2, gt, valid, valid & (np.linalg.norm(gt - ego, axis=1) >= 0.05)


def learned_methods(args) -> list:
    """(label, registry name, options); rows whose checkpoint is missing are left out (and said so)."""
    flot = {n: args.flot_dir / f"model_{n}.tar" for n in (2048, 8192)}
    rows = [("nn", "nn", {}), ("scoop-fpfh (training-free)", "scoop", {})]
    # the learned rows score every point: SCOOP's all-points evaluation (features on random chunks, every
    # target a candidate, 150 refinement steps at lr 0.2 on all points)
    if flot[2048].is_file():
        rows.append(("scoop-flot2048 (FLOT's features, all-points)", "scoop",
                     dict(checkpoint=str(flot[2048]), preset="all-points")))
    if args.scoop_checkpoint is not None:
        rows.append((f"scoop-trained (all-points, chunks of {args.trained_points})", "scoop",
                     dict(checkpoint=str(args.scoop_checkpoint), preset="all-points", points=args.trained_points)))
    for n, path in flot.items():
        if path.is_file():
            rows.append((f"flot-{n} (released weights, {n} points)", "flot", dict(checkpoint=str(path), max_points=n)))
        else:
            print(f"skipped flot-{n}: {path} not found", file=sys.stderr)
    return rows


def learned_main(args) -> int:
    from motionflow.eval.scene import SCOOP_REL_EPS, scene_flow_point_errors
    from motionflow.registry import get_scene_flow_method

    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = args.synthetic if args.synthetic is not None else list(range(1000, 1005))
    pairs = [(f"synthetic-{seed}", load_raw_synthetic(seed, args.beams, args.azimuths)) for seed in seeds]
    if args.data.exists():
        pairs.append(("av2", load_raw_av2(args.data, args.zmax, args.learned_points)))
    else:
        print(f"AV2 sample not found at {args.data}: synthetic pairs only", file=sys.stderr)
    rows, methods = [], learned_methods(args)
    for pair, (pc1, pc2, gt, valid, dynamic) in pairs:
        print(f"{pair}: pc1 {len(pc1)}, pc2 {len(pc2)} points, {int(dynamic.sum())} dynamic", flush=True)
        ref = None
        for label, name, opts in methods:
            if args.only and not any(label.startswith(o) for o in args.only):
                continue
            est = get_scene_flow_method(name, seed=0, **opts)
            t = time.perf_counter()
            res = est(pc1, pc2)
            sec = time.perf_counter() - t
            err = scene_flow_point_errors(res.flow[valid], gt[valid], rel_eps=SCOOP_REL_EPS)
            dyn = dynamic[valid]
            row = dict(pair=pair, method=label, epe3d=float(err["epe3d"].mean()),
                       acc3d_strict=float(err["acc3d_strict"].mean()), acc3d_relax=float(err["acc3d_relax"].mean()),
                       epe_dynamic=float(err["epe3d"][dyn].mean()) if dyn.any() else float("nan"), seconds=sec)
            if label.startswith("scoop-fpfh"):
                ref = sec
            row["seconds_vs_scoop_fpfh"] = sec / ref if ref else None
            rows.append(row)
            ratio = f"{row['seconds_vs_scoop_fpfh']:6.2f}x" if ref else "     -"
            print(f"  {label:<66} EPE3D {row['epe3d']:.4f}  AccS {row['acc3d_strict']:.3f}  AccR {row['acc3d_relax']:.3f}  "
                  f"dynamic EPE {row['epe_dynamic']:.4f}  {sec:7.1f} s ({ratio} scoop-fpfh)", flush=True)
    print("mean over the synthetic pairs:")
    for label, _, _ in methods:
        sel = [r for r in rows if r["method"] == label and r["pair"].startswith("synthetic")]
        if sel:
            print(f"  {label:<66} " + "  ".join(f"{k} {np.mean([r[k] for r in sel]):.4f}" for k in
                                                 ("epe3d", "acc3d_strict", "acc3d_relax", "epe_dynamic", "seconds")))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0



# --- ego motion, rigid with and without max_points, nsfp over seeds (issue 16) ------------------------------


def add_ego_arguments(ap) -> None:
    ap.add_argument("--ego", action="store_true",
                    help="the ego-motion / rigid / nsfp-seeds table instead: ego-motion estimators against the "
                         "log poses on the raw AV2 sweeps; rigid with the log poses, with the estimated ego motion "
                         "(raw sweeps) and on compensated sweeps with nothing given, each with and without "
                         "--max-points 8192; nsfp at 8192 fit points over --nsfp-seeds seeds (on --synthetic "
                         "SEEDS too when given)")
    ap.add_argument("--nsfp-seeds", type=int, default=5, help="--ego: nsfp seeds (0 skips nsfp)")


def ego_candidates() -> list:
    """(label, function(pc1, pc2) -> (4, 4) pc1 -> pc2); library candidates only where installed."""
    from motionflow.sceneflow.ego import estimate_ego_motion, rigid_icp

    out = [("motionflow estimate_ego_motion", lambda a, b: estimate_ego_motion(a, b).transform),
           ("motionflow, no plane gate (planarity 0)", lambda a, b: estimate_ego_motion(a, b, planarity=0.0).transform),
           ("open3d robust point-to-plane (previous)", lambda a, b: rigid_icp(a, b).transform)]
    try:
        import small_gicp

        def gicp(a, b):
            T = np.eye(4)
            for voxel, dist in ((1.0, 3.0), (0.5, 1.5), (0.25, 0.5)):
                s, _ = small_gicp.preprocess_points(a.astype(np.float64), voxel, num_neighbors=10)
                t, tree = small_gicp.preprocess_points(b.astype(np.float64), voxel, num_neighbors=10)
                T = small_gicp.align(t, s, tree, init_T_target_source=T, max_correspondence_distance=dist,
                                     max_iterations=50).T_target_source
            return T

        out.append(("small_gicp GICP (1.0 / 0.5 / 0.25 m)", gicp))
    except ImportError:
        print("skipped small_gicp: not installed", file=sys.stderr)
    try:
        from kiss_icp.config import load_config
        from kiss_icp.kiss_icp import KissICP

        def kiss(a, b):
            cfg = load_config(None)
            cfg.data.deskew = False
            odometry = KissICP(cfg)
            for cloud in (a, b):
                odometry.register_frame(cloud.astype(np.float64), np.zeros(len(cloud)))
            return np.linalg.inv(odometry.last_pose)  # pose of sweep 2 in sweep 1's frame -> pc1 -> pc2

        out.append(("kiss-icp 1.3 (defaults, two frames)", kiss))
    except ImportError:
        print("skipped kiss-icp: not installed", file=sys.stderr)
    return out


def _split_scores(flow, gt, mask, dynamic) -> dict:
    err = np.linalg.norm(flow - gt, axis=1)
    return dict(epe3d=float(err[mask].mean()), epe_static=float(err[mask & ~dynamic].mean()),
                epe_dynamic=float(err[mask & dynamic].mean()) if (mask & dynamic).any() else float("nan"))


def _raw_pair(args, seed=None):
    """(name, raw sample, compensated sample, evaluation mask, dynamic mask): AV2 (valid, non-ground,
    |x|, |y| <= 35 m) or a generated pair with 0.1 degree of pitch per sweep (every point)."""
    from motionflow.geometry import apply_transform, ego_flow

    if seed is None:
        from motionflow.datasets import get_dataset

        raw = get_dataset("av2", str(args.data))[0]
        comp = get_dataset("av2", str(args.data), compensate_ego=True)[0]
        p = raw.pc1
        mask = raw.valid & ~raw.ground1 & (np.abs(p[:, 0]) <= 35) & (np.abs(p[:, 1]) <= 35)
        name = "av2"
    else:
        from dataclasses import replace

        from motionflow.datasets.synthetic import synthetic_lidar_pair

        raw = synthetic_lidar_pair(seed=seed, beams=args.beams, azimuths=args.azimuths, ego_pitch=0.002)
        moved = apply_transform(raw.pc1.astype(np.float64), raw.ego_motion).astype(np.float32)
        comp = replace(raw, pc1=moved, flow=(raw.pc1 + raw.flow - moved).astype(np.float32), ego_motion=np.eye(4))
        mask, name = np.ones(len(raw.pc1), dtype=bool), f"synthetic-{seed}"
    dynamic = np.linalg.norm(raw.flow - ego_flow(raw.pc1, raw.ego_motion), axis=1) >= 0.05
    return name, raw, comp, mask, dynamic


def ego_rows(name, raw, mask, dynamic) -> list:
    from motionflow.geometry import compose_transforms, ego_flow, invert_transform, rotation_angle

    rows = []
    for label, fn in ego_candidates():
        c = time.process_time()
        T = fn(raw.pc1, raw.pc2)
        cpu = time.process_time() - c
        d = compose_transforms(invert_transform(raw.ego_motion), T)
        rot = rotation_angle(d)
        static = mask & ~dynamic
        err = float(np.linalg.norm(ego_flow(raw.pc1[static], T) - raw.flow[static], axis=1).mean())
        rows.append(dict(pair=name, table="ego", method=label, translation_mm=1000 * float(np.linalg.norm(d[:3, 3])),
                         rotation_deg=rot, static_epe=err, cpu_seconds=cpu))
        print(f"  ego  {label:<44} {rows[-1]['translation_mm']:6.2f} mm {rot:.4f} deg from the log  "
              f"static ego-flow EPE {err:.4f} m  cpu {cpu:5.1f} s", flush=True)
    return rows


def rigid_rows(name, raw, comp, mask, dynamic, get_scene_flow_method) -> list:
    rows, ref = [], None
    for max_points in (None, 8192):
        runs = [("rigid, log poses (raw sweeps)", raw, dict(ego_motion=raw.ego_motion)),
                ("rigid, estimated ego (raw sweeps)", raw, {}),
                ("rigid, compensated sweeps, nothing given", comp, {})]
        for label, sample, call in runs:
            est = get_scene_flow_method("rigid", max_points=max_points)
            c = time.process_time()
            res = est(sample.pc1, sample.pc2, **call)
            cpu = time.process_time() - c
            ref = ref or cpu
            row = dict(pair=name, table="rigid", method=label, max_points=max_points, cpu_seconds=cpu,
                       cpu_vs_first=cpu / ref, **_split_scores(res.flow, sample.flow, mask, dynamic))
            rows.append(row)
            print(f"  {label:<44} max_points {str(max_points):>5}  EPE3D {row['epe3d']:.4f}  static "
                  f"{row['epe_static']:.4f}  dynamic {row['epe_dynamic']:.4f}  cpu {cpu:5.1f} s ({cpu / ref:.2f}x)",
                  flush=True)
    return rows


def nsfp_seed_rows(name, pc1, pc2, gt, valid, seeds, get_scene_flow_method) -> list:
    """nsfp at 8192 fit points (the reference loop checked every 10 steps), EPE on every point and on the
    fit points (the official script's protocol)."""
    from motionflow.sceneflow.base import random_subset

    rows = []
    dynamic = np.linalg.norm(gt, axis=1) >= 0.05
    for seed in range(seeds):
        c = time.process_time()
        res = get_scene_flow_method("nsfp", max_points=8192, seed=seed)(pc1, pc2)
        cpu = time.process_time() - c
        idx = random_subset(len(pc1), 8192, torch.Generator().manual_seed(seed))  # the draw the method made
        fit = np.zeros(len(pc1), dtype=bool)
        fit[np.arange(len(pc1)) if idx is None else idx.numpy()] = True
        row = dict(pair=name, table="nsfp", seed=seed, iterations=res.iterations, cpu_seconds=cpu,
                   all=_split_scores(res.flow, gt, valid, dynamic), fit=_split_scores(res.flow, gt, valid & fit, dynamic))
        rows.append(row)
        print(f"  nsfp seed {seed}: {res.iterations} iterations, all points {row['all']}, fit points {row['fit']}, "
              f"cpu {cpu:.0f} s", flush=True)
    if rows:
        for where in ("all", "fit"):
            stats = {k: (np.mean([r[where][k] for r in rows]), np.std([r[where][k] for r in rows]))
                     for k in ("epe3d", "epe_static", "epe_dynamic")}
            its = [r["iterations"] for r in rows]
            print(f"  nsfp over {len(rows)} seeds, {where} points: " + ", ".join(
                f"{k} {m:.4f} +- {s:.4f}" for k, (m, s) in stats.items()) + f", iterations {np.mean(its):.0f} "
                f"(range {min(its)}-{max(its)})", flush=True)
    return rows


def ego_main(args) -> int:
    from motionflow.registry import get_scene_flow_method

    if args.threads:
        torch.set_num_threads(args.threads)
    pairs = [None] if args.synthetic is None else []
    if args.synthetic is None and not args.data.exists():
        print(f"AV2 sample not found at {args.data}", file=sys.stderr)
        return 1
    rows = []
    for seed in pairs + list(args.synthetic or []):
        name, raw, comp, mask, dynamic = _raw_pair(args, seed)
        print(f"{name}: pc1 {len(raw.pc1)}, pc2 {len(raw.pc2)} points, evaluated {int(mask.sum())} "
              f"({int((mask & dynamic).sum())} dynamic); torch threads {torch.get_num_threads()}", flush=True)
        rows += ego_rows(name, raw, mask, dynamic)
        rows += rigid_rows(name, raw, comp, mask, dynamic, get_scene_flow_method)
        fit_input = load_pair(args.data, args.zmax) if seed is None else load_synthetic(seed, args.beams, args.azimuths)
        rows += nsfp_seed_rows(name, *fit_input, args.nsfp_seeds, get_scene_flow_method)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
