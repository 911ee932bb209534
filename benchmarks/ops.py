"""Benchmark of the shared ops, with ratios against a reference measured in the same run.

    python benchmarks/ops.py            # all three parts
    python benchmarks/ops.py --only corr --sizes 436x1024   # one part, smaller

(a) k-nearest neighbours: ``motionflow.ops.neighbors`` backends (open3d, scipy, torch) vs a plain
    ``torch.cdist`` + ``topk`` (chunked over query rows so that 65536 x 65536 fits in memory).
(b) scene-flow data term per optimisation iteration (forward + backward): NSFP's truncated Chamfer
    (``chamfer_distance``, kNN both ways) vs FNSF's distance-field query (``DistanceTransform``, built once).
(c) RAFT correlation lookup, all-pairs volume (``CorrPyramid``) vs on-demand (``OnDemandCorrPyramid``):
    build time, one lookup, and peak resident memory at feature maps of 1/8 of 436x1024 (55x128) and
    1080x1920 (135x240) images, C=256, 4 levels, radius 4, at a smooth synthetic flow field (the on-demand
    cost grows with the spread of the windows of a row chunk). Torch allocations are invisible to tracemalloc,
    so each case runs in a fresh subprocess that resets the kernel's peak-RSS counter after creating the
    inputs (``/proc/self/clear_refs``) and reports the growth of the peak (``VmHWM``) over that resident size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch


def _best_time(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _cdist_topk(q: torch.Tensor, r: torch.Tensor, k: int, chunk: int = 2048):
    dists, idxs = [], []
    for s in range(0, q.shape[0], chunk):
        d = torch.cdist(q[s : s + chunk], r)
        v, i = d.topk(k, dim=1, largest=False)
        dists.append(v)
        idxs.append(i)
    return torch.cat(dists), torch.cat(idxs)


def bench_knn(sizes=(8192, 65536), k: int = 1) -> None:
    from motionflow.ops import knn

    print(f"\n(a) kNN, k={k}, query = ref size, uniform points in a 100 m x 100 m x 5 m box (best of 3 at <= 8192, else 1 run)")
    print(f"{'points':>8} {'method':>18} {'seconds':>10} {'vs torch.cdist':>15}")
    gen = torch.Generator().manual_seed(0)
    for n in sizes:
        scale = torch.tensor([100.0, 100.0, 5.0])
        q = torch.rand(n, 3, generator=gen) * scale
        r = torch.rand(n, 3, generator=gen) * scale
        repeat = 3 if n <= 8192 else 1
        t_ref = _best_time(lambda: _cdist_topk(q, r, k), repeat)
        _, idx_ref = _cdist_topk(q, r, k)
        print(f"{n:>8} {'torch.cdist+topk':>18} {t_ref:>10.4f} {1.0:>14.2f}x")
        for backend in ("open3d", "scipy", "torch"):
            t = _best_time(lambda: knn(q, r, k=k, backend=backend), repeat)
            _, idx = knn(q, r, k=k, backend=backend)
            agree = (idx[:, 0] == idx_ref[:, 0]).float().mean().item()
            print(f"{n:>8} {'knn ' + backend:>18} {t:>10.4f} {t / t_ref:>14.3f}x   (same NN as cdist: {agree:.4f})")


def bench_data_terms(n: int = 16384, iters: int = 10) -> None:
    from motionflow.ops import DistanceTransform, chamfer_distance

    print(f"\n(b) data term per iteration (forward + backward), {n} + {n} points in 40 m x 40 m x 3 m, mean of {iters}")
    gen = torch.Generator().manual_seed(1)
    scale = torch.tensor([40.0, 40.0, 3.0])
    pc1 = torch.rand(n, 3, generator=gen) * scale
    pc2 = pc1 + 0.3 * torch.randn(n, 3, generator=gen)
    flow = torch.zeros(n, 3, requires_grad=True)

    def chamfer_step():
        loss = chamfer_distance(pc1 + flow, pc2, truncate=2.0, squared=True)
        loss.backward()

    t0 = time.perf_counter()
    dt = DistanceTransform.for_pair(pc1, pc2, voxel_size=0.1)
    t_build = time.perf_counter() - t0

    def dt_step():
        loss = dt(pc1 + flow).mean()
        loss.backward()

    chamfer_step()
    dt_step()
    t_ch = _best_time(lambda: [chamfer_step() for _ in range(iters)], 1) / iters
    t_dt = _best_time(lambda: [dt_step() for _ in range(iters)], 1) / iters
    print(f"{'term':>34} {'s/iter':>10} {'vs chamfer':>11}")
    print(f"{'chamfer (NSFP, truncate 2 m^2)':>34} {t_ch:>10.4f} {1.0:>10.2f}x")
    print(f"{'distance field query (FNSF)':>34} {t_dt:>10.4f} {t_dt / t_ch:>10.3f}x")
    print(
        f"{'distance field build (once)':>34} {t_build:>10.3f}  grid {dt.shape}, {dt.nbytes / 2**20:.0f} MiB;"
        f" break-even after {t_build / max(t_ch - t_dt, 1e-9):.0f} iterations"
    )


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> int:
    """Reset the peak-RSS counter (Linux ``clear_refs`` 5) and return the current RSS in KiB.

    Without the reset, ``ru_maxrss`` keeps the high-water mark of the imports, which can hide a smaller
    allocation made afterwards.
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _status_kib("VmRSS")
    except OSError:  # not Linux: fall back to ru_maxrss (KiB on Linux, bytes on macOS)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _peak_rss() -> int:
    try:
        return _status_kib("VmHWM")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _corr_worker(h: int, w: int, impl: str, channels: int = 256) -> dict:
    """Runs in a fresh process: build + one lookup, peak RSS growth in MiB."""
    from motionflow.ops import CorrPyramid, OnDemandCorrPyramid, coords_grid

    torch.manual_seed(0)
    f1 = torch.randn(1, channels, h, w)
    f2 = torch.randn(1, channels, h, w)
    # a smooth flow (bilinear upsampling of a 4x8 grid of N(0, 5^2) px vectors at 1/8 resolution, i.e.
    # up to about +-100 px in the image) plus N(0, 0.5^2) px per-pixel noise: the kind of field RAFT iterates on
    coarse = 5.0 * torch.randn(1, 2, 4, 8)
    flow = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=True)
    coords = coords_grid(1, h, w) + flow + 0.5 * torch.randn(1, 2, h, w)
    base = _reset_peak_rss()
    cls = CorrPyramid if impl == "full" else OnDemandCorrPyramid
    with torch.no_grad():
        t0 = time.perf_counter()
        pyr = cls(f1, f2, num_levels=4, radius=4)
        t1 = time.perf_counter()
        out = pyr(coords)
        t2 = time.perf_counter()
        out2 = pyr(coords + 0.5)  # RAFT calls the lookup once per refinement iteration
        t3 = time.perf_counter()
    peak = _peak_rss()
    checksum = float(out.double().abs().sum() + out2.double().abs().sum())
    return {
        "build_s": t1 - t0,
        "lookup_s": min(t2 - t1, t3 - t2),
        "peak_mib": (peak - base) / 1024.0,
        "checksum": checksum,
        "shape": list(out.shape),
    }


def _run_worker(h: int, w: int, impl: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--corr-worker", f"{h}x{w}", impl]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"correlation worker {h}x{w} {impl} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def bench_corr(image_sizes=((436, 1024), (1080, 1920)), iterations: int = 12) -> None:
    print(
        "\n(c) RAFT correlation, C=256, 4 levels, radius 4, features at 1/8 of the image; each case in a fresh "
        "process; peak = growth of peak RSS"
    )
    print(
        f"{'image':>10} {'features':>9} {'impl':>9} {'build s':>9} {'lookup s':>9} "
        f"{'build+' + str(iterations) + ' lookups':>18} {'peak MiB':>9}"
    )
    for ih, iw in image_sizes:
        h, w = -(-ih // 8), -(-iw // 8)  # RAFT pads the image to a multiple of 8
        rows = {impl: _run_worker(h, w, impl) for impl in ("full", "ondemand")}
        for impl, r in rows.items():
            total = r["build_s"] + iterations * r["lookup_s"]
            print(
                f"{ih}x{iw:<5} {h}x{w:<5} {impl:>9} {r['build_s']:>9.3f} {r['lookup_s']:>9.3f} "
                f"{total:>18.3f} {r['peak_mib']:>9.0f}"
            )
        f, o = rows["full"], rows["ondemand"]
        same = abs(f["checksum"] - o["checksum"]) <= 1e-4 * abs(f["checksum"])
        t_f = f["build_s"] + iterations * f["lookup_s"]
        t_o = o["build_s"] + iterations * o["lookup_s"]
        print(
            f"{'':>10} ratio on-demand / full: build {o['build_s'] / f['build_s']:.3f}x, lookup "
            f"{o['lookup_s'] / f['lookup_s']:.2f}x, build+{iterations} lookups {t_o / t_f:.2f}x, "
            f"peak memory {o['peak_mib'] / max(f['peak_mib'], 1e-9):.4f}x  (outputs agree: {same})"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("knn", "data", "corr"), action="append", help="run only these parts")
    parser.add_argument("--sizes", nargs="+", default=["436x1024", "1080x1920"], help="image sizes for (c)")
    parser.add_argument("--corr-worker", nargs=2, metavar=("HxW", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.corr_worker:
        h, w = (int(v) for v in args.corr_worker[0].split("x"))
        print(json.dumps(_corr_worker(h, w, args.corr_worker[1])))
        return 0
    parts = args.only or ["knn", "data", "corr"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, numpy {np.__version__}")
    if "knn" in parts:
        bench_knn()
    if "data" in parts:
        bench_data_terms()
    if "corr" in parts:
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes]
        bench_corr(sizes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
