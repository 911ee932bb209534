"""Benchmark of the learned networks as methods (random weights, this CPU, one run per case).

    python benchmarks/networks.py                       # both parts, the sizes of the issue
    python benchmarks/networks.py --only speed --size 216x512 --iters 2   # smaller / quicker
    python benchmarks/networks.py --one-window          # time one pass per method x passes of its plan
    python benchmarks/networks.py --onnx --size 216x512 --iters 4   # (c) only: ONNX Runtime vs torch

(a) **Throughput** on one 8-frame clip (432x1024 by default, a smooth random texture under a
    translation): flows per second (7 forward flows / seconds) of
    * StreamFlow SIM (``streamflow``: groups of 4 frames overlapping by one -> 3 forward passes),
    * VideoFlow BOF sliding windows (``videoflow-bof``: one 3-frame window per centre frame -> 8 passes,
      each also producing a backward flow),
    * RAFT pairwise (``raft``: 7 two-frame passes),
    all through :class:`motionflow.models.method.NetworkFlowMethod` with the same number of refinement
    iterations (``--iters``, default 4: the CPU here is small; the paper's figures use the official
    iteration counts on an A100). Ratios are against VideoFlow BOF measured in the same run; the
    StreamFlow paper (Tab. 5) reports StreamFlow 1.44x faster than its sliding-window (VideoFlow BOF)
    baseline per frame.
(b) **Peak memory at 1080x1920** of RAFT on one pair (1 iteration: the peak is reached when the
    correlation pyramid is built), with the all-pairs pyramid and with the memory-bounded
    ``OnDemandCorrPyramid`` (the adapter switches to it above ``ON_DEMAND_PIXELS``). Torch CPU
    allocations are invisible to tracemalloc, so each case runs in a fresh subprocess and reports the
    growth of ``ru_maxrss`` (peak RSS) over the resident size after the model and frames were created.
(c) **ONNX Runtime vs torch** (``--onnx``, :func:`bench_onnx`): each network exported with
    ``export_onnx`` and one window run by both backends in fresh processes, same frames and threads:
    flows per second and peak memory as ratios ORT / torch, and max |ORT - torch|.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def _clip(frames: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """``(1, T, 3, H, W)`` in [0, 255]: a smooth random texture translated by (2.5, 1.5) px per frame."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, h // 16 + 4, w // 16 + 4, generator=g)
    tex = torch.nn.functional.interpolate(base, size=(h + 64, w + 64), mode="bicubic", align_corners=False)
    tex = (tex - tex.min()) / (tex.max() - tex.min()) * 255
    out = []
    for t in range(frames):
        dx, dy = int(round(2.5 * t)), int(round(1.5 * t))
        out.append(tex[:, :, 32 - dy : 32 - dy + h, 32 - dx : 32 - dx + w])
    return torch.stack(out, dim=1).contiguous()


def _method(name: str, iters: int, **kw):
    from motionflow.registry import get_optical_flow_method

    return get_optical_flow_method(name, weights="random", iters=iters, device="cpu", **kw)


def _one_window_seconds(method, clip: torch.Tensor) -> tuple:
    """Wall and CPU seconds of one forward pass (the first window of the method's plan)."""
    from motionflow.models.method import pad_frames, padding_for, window_indices

    t = clip.shape[1]
    start, length = method.spec.windows(t)[0]
    x = pad_frames(clip, padding_for(*clip.shape[-2:]))[:, window_indices(start, length, t)]
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        method.spec.run_window(method.model, x, method.iters, False)
    return time.perf_counter() - t0, time.process_time() - c0


def bench_speed(h: int, w: int, frames: int, iters: int, names, one_window: bool = False) -> None:
    clip = _clip(frames, h, w)
    pairs = frames - 1
    how = "one forward pass each, times the passes of the plan" if one_window else "one run of the clip each"
    print(f"\n(a) throughput: {frames}-frame clip {h}x{w}, random weights, {iters} iterations, "
          f"{torch.get_num_threads()} threads, {how}")
    print("flows/s and ratios use process CPU seconds (the machine is shared; wall seconds are shown too)")
    print(f"{'method':>15} {'forward passes':>15} {'wall s':>8} {'CPU s':>8} {'flows/CPU-s':>12} {'vs videoflow-bof':>17}")
    rows = {}
    for name in names:
        torch.manual_seed(0)
        method = _method(name, iters)
        passes = len(method.spec.windows(frames))
        if one_window:
            wall, cpu = (passes * v for v in _one_window_seconds(method, clip))
        else:
            t0, c0 = time.perf_counter(), time.process_time()
            pred = method(clip)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            assert pred.flow.shape == (1, pairs, 2, h, w) and torch.isfinite(pred.flow).all()
            del pred
        rows[name] = (passes, wall, cpu, pairs / cpu)
        print(f"  {name}: done ({wall:.1f} s wall)", flush=True)
        del method
    ref = rows.get("videoflow-bof", (None,) * 4)[3]
    for name, (passes, wall, cpu, fps) in rows.items():
        ratio = f"{fps / ref:.2f}x" if ref else "-"
        print(f"{name:>15} {passes:>15} {wall:>8.1f} {cpu:>8.1f} {fps:>12.4f} {ratio:>17}")
    if "streamflow" in rows and "raft" in rows:
        print(f"StreamFlow vs RAFT pairwise: {rows['streamflow'][3] / rows['raft'][3]:.2f}x flows per CPU second")
    print("paper (StreamFlow Tab. 5, A100, official iterations): StreamFlow 1.44x faster than VideoFlow-BOF windows")


_CHILD = r"""
import json, resource, sys, time, torch
from motionflow.registry import get_optical_flow_method
h, w, on_demand = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
torch.manual_seed(0)
m = get_optical_flow_method("raft", weights="random", iters=1, device="cpu",
                            on_demand_pixels=0 if on_demand else None)
frames = torch.rand(1, 2, 3, h, w) * 255
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
pred = m(frames)
sec = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert pred.meta["on_demand_corr"] == on_demand and torch.isfinite(pred.flow).all()
print(json.dumps({"base_mb": base / 1024, "peak_mb": peak / 1024, "seconds": sec, "cpu": time.process_time()}))
"""


def bench_memory(h: int, w: int) -> None:
    from motionflow.models.method import ON_DEMAND_PIXELS, padding_for

    l, r, t, b = padding_for(h, w)
    hp, wp = h + t + b, w + l + r
    vol_gb = (hp // 8 * wp // 8) ** 2 * 4 / 1e9 * (1 + 1 / 4 + 1 / 16 + 1 / 64)
    print(f"\n(b) RAFT peak memory on one {h}x{w} pair (padded {hp}x{wp}), 1 iteration, fresh process per case")
    print(f"    all-pairs pyramid alone: {vol_gb:.2f} GB; adapter threshold ON_DEMAND_PIXELS = {ON_DEMAND_PIXELS:,} "
          f"(this frame: {hp * wp:,} px -> on-demand by default)")
    print(f"{'correlation':>12} {'peak RSS growth (MB)':>22} {'seconds':>9}")
    res = {}
    for on_demand in (False, True):
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(h), str(w), "1" if on_demand else "0"],
            capture_output=True, text=True,
        )
        label = "on-demand" if on_demand else "all-pairs"
        if out.returncode != 0:
            print(f"{label:>12} failed: {out.stderr.strip().splitlines()[-1] if out.stderr else out.returncode}")
            continue
        d = json.loads(out.stdout.strip().splitlines()[-1])
        res[label] = d
        print(f"{label:>12} {d['peak_mb'] - d['base_mb']:>22.0f} {d['seconds']:>9.1f}")
    if len(res) == 2:
        a = res["all-pairs"]["peak_mb"] - res["all-pairs"]["base_mb"]
        o = res["on-demand"]["peak_mb"] - res["on-demand"]["base_mb"]
        print(f"on-demand uses {a / o:.1f}x less peak memory ({o / 1024:.2f} GB vs {a / 1024:.2f} GB), "
              f"{res['on-demand']['seconds'] / res['all-pairs']['seconds']:.2f}x the time")


_ONNX_CHILD = r"""
import json, resource, sys, time
import numpy as np, onnxruntime, torch
from motionflow.models.export import example_frames
from motionflow.registry import get_optical_flow_method
name, backend, h, w, iters, threads, onnx, runs, out = sys.argv[1:10]
h, w, iters, threads, runs = int(h), int(w), int(iters), int(threads), int(runs)
torch.set_num_threads(threads)
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if backend == "torch":
    torch.manual_seed(0)  # the weights the parent exported
    m = get_optical_flow_method(name, weights="random", iters=iters, device="cpu", on_demand_pixels=None)
else:
    m = get_optical_flow_method(name, backend="onnxruntime", onnx=onnx, threads=threads)
window = m.spec.windows(m.spec.clip_length)[0][1]
x = example_frames(1, window, h, w)
walls, cpus = [], []
for _ in range(runs + 1):  # the first run is a warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        res = m.run_window(x)
    walls.append(time.perf_counter() - t0)
    cpus.append(time.process_time() - c0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
np.save(out, torch.stack([res.forward[p] for p in sorted(res.forward)], 1).numpy())
print(json.dumps({"wall": float(np.median(walls[1:])), "cpu": float(np.median(cpus[1:])), "flows": len(res.forward),
                  "mb": (peak - rss0) / 1024}))
"""


def bench_onnx(h: int, w: int, iters: int, names, runs: int = 3) -> None:
    """ONNX Runtime vs torch on this CPU: one window of each network, random weights (seed 0), same frames.

    Each network is exported once (``export_onnx``, fixed size, dynamic batch); then a fresh process per
    backend times ``runs`` forward passes of one window after a warm-up through the method's own
    ``run_window`` (no padding: the size is padded already) and reports the growth of its peak RSS over
    the process after importing torch, onnxruntime and motionflow (model / session, frames and the
    forward). Same thread count for both (torch's). Ratios are ONNX Runtime over torch, from the same run.
    """
    import tempfile
    from pathlib import Path

    import numpy as np

    from motionflow.models import export_onnx
    from motionflow.models.export import export_size

    h, w = export_size(h, w)
    threads = torch.get_num_threads()
    print(f"\n(c) ONNX Runtime vs torch, one window per network at {h}x{w}, random weights, {iters} iterations, "
          f"{threads} threads, median of {runs} runs after a warm-up, fresh process per case")
    print(f"{'network':>14} {'export s':>9} {'torch flows/s':>14} {'ORT flows/s':>12} {'speed ORT/torch':>16} "
          f"{'(CPU s ratio)':>14} {'torch MB':>9} {'ORT MB':>8} {'memory ORT/torch':>17} {'max|diff| px':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            path = Path(tmp) / f"{name}.onnx"
            torch.manual_seed(0)
            t0 = time.perf_counter()
            export_onnx(name, None, (h, w), path, iters=iters, weights="random", verify=False)
            export_s = time.perf_counter() - t0
            res = {}
            for backend in ("torch", "onnxruntime"):
                out = subprocess.run(
                    [sys.executable, "-c", _ONNX_CHILD, name, backend, str(h), str(w), str(iters), str(threads),
                     str(path), str(runs), str(Path(tmp) / f"{name}-{backend}.npy")],
                    capture_output=True, text=True,
                )
                if out.returncode != 0:
                    print(f"{name:>14} {backend} failed: {(out.stderr.strip().splitlines() or [out.returncode])[-1]}")
                    break
                res[backend] = json.loads(out.stdout.strip().splitlines()[-1])
            if len(res) < 2:
                continue
            t, o = res["torch"], res["onnxruntime"]
            diff = np.abs(np.load(Path(tmp) / f"{name}-torch.npy") - np.load(Path(tmp) / f"{name}-onnxruntime.npy")).max()
            print(f"{name:>14} {export_s:>9.1f} {t['flows'] / t['wall']:>14.3f} {o['flows'] / o['wall']:>12.3f} "
                  f"{t['wall'] / o['wall']:>15.2f}x {t['cpu'] / o['cpu']:>13.2f}x {t['mb']:>9.0f} {o['mb']:>8.0f} "
                  f"{o['mb'] / t['mb']:>16.2f}x {diff:>13.2g}")
    print("speed ratio > 1: ONNX Runtime is faster; memory ratio < 1: ONNX Runtime needs less")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=["speed", "memory"], default=None)
    p.add_argument("--size", default="432x1024", help="HxW of the throughput clip")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--iters", type=int, default=4)
    p.add_argument("--methods", default="streamflow,videoflow-bof,raft")
    p.add_argument("--memory-size", default="1080x1920")
    p.add_argument("--one-window", action="store_true",
                   help="time one forward pass per method and multiply by the passes of its window plan "
                        "(every pass of a plan costs the same; for a busy machine)")
    p.add_argument("--onnx", action="store_true",
                   help="only (c): ONNX Runtime vs torch per network (--size, --iters, --networks, --runs)")
    p.add_argument("--networks", default="raft,videoflow-bof,videoflow-mof,streamflow", help="networks for --onnx")
    p.add_argument("--runs", type=int, default=3, help="timed runs per case for --onnx")
    args = p.parse_args(argv)
    if args.onnx:
        h, w = (int(v) for v in args.size.split("x"))
        bench_onnx(h, w, args.iters, args.networks.split(","), args.runs)
        return 0
    if args.only in (None, "speed"):
        h, w = (int(v) for v in args.size.split("x"))
        bench_speed(h, w, args.frames, args.iters, args.methods.split(","), args.one_window)
    if args.only in (None, "memory"):
        h, w = (int(v) for v in args.memory_size.split("x"))
        bench_memory(h, w)
    return 0


if __name__ == "__main__":
    sys.exit(main())
