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
(d) **Memory of all four networks** (``--only memory``, :func:`bench_network_memory`; the issue-21
    table): for RAFT, VideoFlow BOF / MOF and StreamFlow at ``--memory-size`` (default 1080x1920, a
    comma-separated list is allowed), one window each in a fresh process, the official full-tensor path
    and the memory-bounded path: peak RSS growth (``ru_maxrss`` over the resident size before the call),
    the peak of live tensors (:class:`~motionflow.models.blocks.memory.PeakTensorMemory`), wall and CPU
    seconds, CPU seconds per forward flow, and the official / bounded ratios where the official path
    fits. The official path runs under an address-space limit of ``--memory-limit-gib`` (default 8 GiB of
    growth) so that it fails fast instead of exhausting a shared machine. ``--device cuda`` gives the same
    table with ``torch.cuda.max_memory_allocated`` for every ``--precisions`` entry (fp32, bf16).
    ``--profile`` first prints (p): the official networks' peak tensors on the meta device (no memory).
(c) **ONNX Runtime vs torch** (``--onnx``, :func:`bench_onnx`): each network exported with
    ``export_onnx`` and one window run by both backends in fresh processes, same frames and threads:
    flows per second and peak memory as ratios ORT / torch, and max |ORT - torch|.
"""

from __future__ import annotations

import argparse
import json
import re
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


_NET_CHILD = r"""
import json, resource, sys, time, torch
from motionflow.models.blocks.memory import PeakTensorMemory, set_max_bytes, softmax_attention
from motionflow.registry import get_optical_flow_method
name, path, h, w, iters, device, precision, limit_gib = sys.argv[1:9]
h, w, iters, limit = int(h), int(w), int(iters), float(limit_gib)
cuda = device == "cuda"
torch.manual_seed(0)
m = get_optical_flow_method(name, weights="random", iters=iters, device=device, precision=precision)
if path == "official":
    set_max_bytes(m.model, None)  # the full attention / GMA matrices, the whole-tensor MLPs
n = m.spec.windows(m.spec.clip_length)[0][1]
x = torch.rand(1, n, 3, h, w, device=device) * 255  # H, W multiples of 8 and >= 128: no padding
# the correlation as the adapter chooses it: before issue 21 on demand above 1 MP, now above 1 MP / sqrt(volumes)
from motionflow.models.method import ON_DEMAND_PIXELS
m.model.corr_on_demand = h * w > ON_DEMAND_PIXELS if path == "official" else m.uses_on_demand(h, w)
q = torch.zeros(1, 1, 8, 8, device=device)
with PeakTensorMemory():  # the first fused attention under the tracker imports sympy: not timed
    softmax_attention(q, q, q, 1.0, max_bytes=0)
amp = torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16,
                     enabled=cuda and precision != "fp32")
if cuda:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
else:
    status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
    vm = int(status["VmSize"].split()[0]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + int(limit * 2**30), resource.RLIM_INFINITY))
    base = int(status["VmRSS"].split()[0]) * 1024
mem = PeakTensorMemory(m.model, exclude=[x])
t0, c0 = time.perf_counter(), time.process_time()
try:
    with torch.no_grad(), amp, mem:
        res = m.spec.run_window(m.model, x, iters, path == "official")
    if cuda:
        torch.cuda.synchronize()
except (RuntimeError, MemoryError) as e:
    print(json.dumps({"error": str(e).strip().splitlines()[0][:160], "module": mem.module}))
    sys.exit(3)
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
if cuda:
    peak = torch.cuda.max_memory_allocated() - base
else:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
flows = list(res.forward.values())
assert all(torch.isfinite(f).all() for f in flows)
print(json.dumps({"peak": peak, "tensors": mem.peak, "top": mem.peak_tensors[:3], "wall": wall, "cpu": cpu,
                  "flows": len(flows)}))
"""

MEMORY_NETWORKS = ("raft", "videoflow-bof", "videoflow-mof", "streamflow")


def _network_memory_case(name, path, h, w, iters, device, precision, limit_gib) -> dict:
    """One fresh process: a window of ``name`` at ``h x w`` on the ``official`` or ``bounded`` path."""
    cmd = [sys.executable, "-c", _NET_CHILD, name, path, str(h), str(w), str(iters), device, precision, str(limit_gib)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    lines = out.stdout.strip().splitlines()
    if lines and lines[-1].startswith("{"):
        return json.loads(lines[-1])
    err = out.stderr.strip().splitlines()
    return {"error": err[-1][:160] if err else f"exit status {out.returncode}", "module": ""}


def bench_network_memory(sizes, iters: int, names, device: str = "cpu", precisions=("fp32",),
                         limit_gib: float = 8.0, show_tensors: bool = False) -> None:
    """(d) Peak memory and seconds per flow of every network, official (full-tensor) vs bounded paths.

    Each case is one forward window in a fresh process. ``official`` = every bounded layer off
    (``set_max_bytes(model, None)``, all iterations kept), the correlation chosen as the adapter did
    before issue 21 (on demand above 1 MP); ``bounded`` = the defaults (on demand above
    ``1 MP / sqrt(correlation volumes)``). CPU: growth of the peak RSS
    over the resident size before the call; the process may grow by at most ``limit_gib`` (address
    space limit: a path that needs more fails fast and is reported as not fitting). CUDA:
    ``torch.cuda.max_memory_allocated`` over the allocation before the call, per precision.
    """
    unit = "max_memory_allocated" if device == "cuda" else "peak RSS growth"
    for h, w in sizes:
        for precision in precisions:
            print(f"\n(d) {h}x{w}, one window, {iters} iteration(s), random weights, {device} {precision}, "
                  f"fresh process per case; {unit} (GiB), tensors = peak of live tensors (PeakTensorMemory)")
            print(f"{'network':>14} {'path':>9} {'GiB':>7} {'tensors':>8} {'wall s':>8} {'CPU s':>8} "
                  f"{'CPU s/flow':>10} {'official/bounded':>17}")
            for name in names:
                rows = {}
                for path in ("official", "bounded"):
                    r = _network_memory_case(name, path, h, w, iters, device, precision, limit_gib)
                    rows[path] = r
                    if "error" in r:
                        need = re.search(r"allocate (\d+) bytes", r["error"])
                        why = f"one {int(need[1]) / 2**30:.1f} GiB allocation failed" if need else r["error"]
                        print(f"{name:>14} {path:>9}   does not fit in {limit_gib:g} GiB: {why} "
                              f"(in {r['module'] or '-'})", flush=True)
                        continue
                    ratio = ""
                    if path == "bounded" and "error" not in rows["official"]:
                        o = rows["official"]
                        ratio = f"mem {o['peak'] / r['peak']:.1f}x, CPU {o['cpu'] / r['cpu']:.2f}x"
                    print(f"{name:>14} {path:>9} {r['peak'] / 2**30:>7.2f} {r['tensors'] / 2**30:>8.2f} "
                          f"{r['wall']:>8.1f} {r['cpu']:>8.1f} {r['cpu'] / r['flows']:>10.1f} {ratio:>17}", flush=True)
                    if show_tensors:
                        for b, label in r["top"]:
                            print(f"{'':>26} {b / 2**30:.2f} GiB  {label}")


def profile_official(h: int, w: int, names) -> None:
    """(p) Which tensors hold the peak of the official networks at ``h x w``: one forward (1 iteration)
    on the meta device (shapes only: no memory, no compute), all-pairs correlation, every bounded layer off."""
    import contextlib

    from motionflow.models import create_model
    from motionflow.models.blocks.memory import PeakTensorMemory, set_max_bytes

    print(f"\n(p) official networks at {h}x{w} on the meta device (1 iteration, all-pairs correlation): "
          "peak of live tensors and the largest ones then")
    autocast = torch.autocast
    torch.autocast = lambda *a, **k: contextlib.nullcontext()  # no autocast on meta; these regions are fp32
    try:
        for name in names:
            model = set_max_bytes(create_model(name).eval().to("meta"), None)
            model.corr_on_demand = False
            n = {"raft": 2, "videoflow-bof": 3, "videoflow-mof": 5}.get(name, 4)
            x = torch.empty(1, n, 3, h, w, device="meta")
            with torch.no_grad(), PeakTensorMemory(model, exclude=[x]) as mem:
                if name == "raft":
                    model(x[:, 0], x[:, 1], iters=1)
                else:
                    model(x, iters=1)
            print(f"{name:>14}: {mem.peak / 2**30:.1f} GiB at {mem.peak_op}")
            for b, label in mem.peak_tensors[:4]:
                print(f"{'':>16}{b / 2**30:6.2f} GiB  {label}")
    finally:
        torch.autocast = autocast


_ONNX_CHILD = r"""
import json, sys, time
import numpy as np, onnxruntime, torch
from motionflow.models.export import example_frames, window_length
from motionflow.registry import get_optical_flow_method
name, backend, h, w, iters, threads, onnx, runs, out = sys.argv[1:10]
h, w, iters, threads, runs = int(h), int(w), int(iters), int(threads), int(runs)
torch.set_num_threads(threads)

def status_kb(key):
    return int(next(l for l in open("/proc/self/status") if l.startswith(key + ":")).split()[1])

with open("/proc/self/clear_refs", "w") as f:  # reset the peak RSS (VmHWM) left by the imports
    f.write("5")
rss0 = status_kb("VmRSS")
if backend == "torch":
    torch.manual_seed(0)  # the weights the parent exported
    m = get_optical_flow_method(name, weights="random", iters=iters, device="cpu", on_demand_pixels=None)
else:
    m = get_optical_flow_method(name, backend="onnxruntime", onnx=onnx, threads=threads)
window = window_length(m.spec)
x = example_frames(1, window, h, w)
walls, cpus = [], []
for _ in range(runs + 1):  # the first run is a warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        res = m.run_window(x)
    walls.append(time.perf_counter() - t0)
    cpus.append(time.process_time() - c0)
peak = status_kb("VmHWM")
np.save(out, torch.stack([res.forward[p] for p in sorted(res.forward)], 1).numpy())
print(json.dumps({"wall": float(np.median(walls[1:])), "cpu": float(np.median(cpus[1:])), "flows": len(res.forward),
                  "mb": (peak - rss0) / 1024}))
"""


def bench_onnx(h: int, w: int, iters: int, names, runs: int = 3) -> None:
    """ONNX Runtime vs torch on this CPU: one window of each network, random weights (seed 0), same frames.

    Each network is exported once (``export_onnx``, fixed size, dynamic batch); then a fresh process per
    backend times ``runs`` forward passes of one window after a warm-up through the method's own
    ``run_window`` (no padding: the size is padded already) and reports the growth of its peak RSS
    (``VmHWM``, reset after importing torch, onnxruntime and motionflow) over the resident size then:
    model / session, frames and the forward. Same thread count for both (torch's). Ratios are ONNX Runtime over torch, from the same run.
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
    p.add_argument("--only", choices=["speed", "memory", "network-memory"], default=None,
                   help="memory: (b) and (d); network-memory: (d) only")
    p.add_argument("--size", default="432x1024", help="HxW of the throughput clip")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--iters", type=int, default=4)
    p.add_argument("--methods", default="streamflow,videoflow-bof,raft")
    p.add_argument("--memory-size", default="1080x1920", help="HxW[,HxW...] of the memory tables (b) and (d)")
    p.add_argument("--memory-iters", type=int, default=1, help="refinement iterations in (d)")
    p.add_argument("--memory-networks", default=",".join(MEMORY_NETWORKS), help="networks of (d)")
    p.add_argument("--memory-limit-gib", type=float, default=8.0,
                   help="(d): growth a case may reach before it is stopped as not fitting (CPU)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="device of (d)")
    p.add_argument("--precisions", default=None, help="(d) on CUDA: comma-separated fp32,bf16 (default both)")
    p.add_argument("--profile", action="store_true",
                   help="(p): peak tensors of the official networks on the meta device, then (d) with the "
                        "largest tensors at each peak")
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
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.memory_size.split(",")]
    if args.only in (None, "memory"):
        bench_memory(*sizes[0])
    if args.only in (None, "memory", "network-memory"):
        names = args.memory_networks.split(",")
        if args.profile:
            for h, w in sizes:
                profile_official(h, w, names)
        precisions = args.precisions.split(",") if args.precisions else (
            ["fp32", "bf16"] if args.device == "cuda" else ["fp32"])
        if args.device == "cuda" and not torch.cuda.is_available():
            print("\n(d) --device cuda: no CUDA device here; the table needs a GPU")
            return 1
        bench_network_memory(sizes, args.memory_iters, names, args.device, precisions, args.memory_limit_gib,
                             show_tensors=args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
