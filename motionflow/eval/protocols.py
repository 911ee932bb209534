"""Evaluation protocols: what each paper's evaluation script fixes, as named objects.

A :class:`Protocol` fixes everything between a dataset root and a number: the loader options (clip
length, how clips tile a scene, which frames surround the annotated pair), how a method receives its
input (optical: the network runs exactly one window per clip; scene flow: ground removal, crop, points
for the fit, which points are scored, how removed points are filled; see :mod:`.preparation`), the
metrics, their ``eps`` and their reductions. ``motionflow eval --protocol NAME`` picks one; without it
:func:`default_protocol` picks the published one of the dataset and the method. The report records the
protocol, every option it used and every deviation (``protocol.notes``).

Optical protocols (Sintel training / KITTI training, all metrics of :mod:`.optical`):

=========================== ====================================================================
``sintel`` / ``kitti2015``  pairs (RAFT ``evaluate.py`` ``validate_sintel`` / ``validate_kitti``)
``*-videoflow-bof``         3-frame windows: Sintel ``[t-1, t, t+1]`` with the first frame repeated
                            (``datasets_3frames.MpiSintel``), KITTI ``_09 _10 _11`` (``KITTITest``)
``*-videoflow-mof``         5-frame windows: Sintel every 3 frames scoring the 3 inner flows, first
                            frame repeated, end-aligned remainder (``MpiSintelTrain``), KITTI
                            ``_08 .. _12`` (``KITTITest``)
``*-streamflow``            SIM groups of 4 overlapping by one, end-aligned (``SintelMultiframeEval``),
                            KITTI ``_08 .. _11`` with the pair last (``KITTIMultiFrameEval``)
``kitti2012*``              the same windows, KITTI 2012 devkit metrics (``out2 .. out5``, Avg)
``default``                 any other optical dataset: the loader's clips, pixel-pooled metrics
=========================== ====================================================================

Scene-flow protocols: ``nsfp`` (NSFP ``optimization.py``: 2048 random points per cloud, metrics on
them, mean over samples), ``nsfp-dense`` (``--use_all_points``), ``fnsf`` (FastNSF: every point),
``scoop`` (``evaluate_scoop.py``: the 35 m depth cut, KITTI_o every point, KITTI_s 8192 points, ``rel``
eps 1e-4), ``av2``
(the Argoverse 2 challenge: every point scored inside the eval mask, three-way and bucketed EPE, ego
motion required; per method the preparation that makes it run on full sweeps) and ``scene`` (any other
lidar set: every point, NSFP's metric code).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Optional

import numpy as np

from ..errors import UnknownNameError
from .accumulator import Accumulator
from .scene import AV2_EPS, NSFP_REL_EPS, SCOOP_REL_EPS

#: OpenSceneFlow's ``point_cloud_range`` for AV2 (ego frame, metres): the crop of the optimisation
#: methods under the AV2 protocol (``xmin, ymin, zmin, xmax, ymax, zmax``)
OPENSCENEFLOW_RANGE = (-51.2, -51.2, -3.0, 51.2, 51.2, 3.0)
#: network window of each multi-frame method family (frames per forward pass)
METHOD_WINDOWS = {"videoflow-bof": 3, "videoflow-mof": 5, "streamflow": 4}


@dataclass(frozen=True)
class ScenePreparation:
    """How a scene-flow method's input is prepared and which points are scored.

    Attributes:
        ground: ``None``; ``"labels"`` (the sample's ground labels, a RANSAC plane for a cloud without
            them) or ``"ransac"``: ground points are removed before the method runs.
        box: crop ``(xmin, ymin, zmin, xmax, ymax, zmax)`` in the sweep's ego frame, or None.
        sample_points: fit on (and score only) this many random points per cloud, or None (every point).
        shared_index: draw one index set for both clouds (FastNSF's 8192-point mode) instead of one
            per cloud (NSFP, SCOOP).
        fill: flow of removed points: ``"ego"`` (the ego-motion flow of a static point), ``"nearest"``
            (flow of the nearest kept point) or ``"nan"`` (not predicted; only with ``sample_points``).
        ego_motion: give the method the sample's ego motion (``compensate_ego``: it estimates the
            residual of the ego-compensated pair).
        method_options: defaults of the method's own options under this protocol (``(key, value)``
            pairs; an option the user passes wins).
    """

    ground: Optional[str] = None
    box: Optional[tuple] = None
    sample_points: Optional[int] = None
    shared_index: bool = False
    fill: str = "ego"
    ego_motion: bool = False
    method_options: tuple = ()

    @property
    def active(self) -> bool:
        """Whether anything is done to the clouds before the method sees them."""
        return bool(self.ground or self.box is not None or self.sample_points or self.ego_motion)

    def to_dict(self) -> dict:
        return {
            "ground": self.ground, "box": None if self.box is None else list(self.box),
            "sample_points": self.sample_points, "shared_index": self.shared_index, "fill": self.fill,
            "ego_motion": self.ego_motion, "method_options": dict(self.method_options),
        }


NO_PREPARATION = ScenePreparation()


@dataclass(frozen=True)
class Protocol:
    """A published evaluation protocol (see the module docstring).

    Attributes:
        name: the name ``--protocol`` takes.
        kind: ``"optical"`` or ``"scene"``.
        summary: one line for ``motionflow list``.
        script: the official script (repository: file, function) it reproduces.
        datasets: dataset names it is defined for (empty: any dataset of its kind).
        dataset_options: loader options it fixes (``(key, value)`` pairs).
        clip_mode: how samples are cut: ``pairs``, ``windows``, ``sim-groups``, ``kitti-multiview``,
            ``loader`` (the loader's own clips) or ``sweep-pair``.
        clip_frames: frames the method receives per sample (2 sweeps for scene flow).
        single_window: optical networks run exactly one window, the whole clip (``windows=[(0, T)]``).
        metrics: metric family: ``sintel``, ``kitti2015``, ``kitti2012``, ``default`` (optical,
            :data:`motionflow.eval.optical.PROTOCOLS`), ``nsfp``, ``scoop``, ``av2`` (scene).
        rel_eps: scene flow ``rel = epe / (||gt|| + rel_eps)``.
        preparations: ``(key, ScenePreparation)`` pairs; key ``"method:NAME"``, ``"dataset:NAME"`` or
            ``"*"`` (looked up in that order, :meth:`preparation_for`).
        notes: standing deviations from the official script.
    """

    name: str
    kind: str
    summary: str
    script: str
    datasets: tuple = ()
    dataset_options: tuple = ()
    clip_mode: str = "pairs"
    clip_frames: int = 2
    single_window: bool = False
    metrics: str = "default"
    rel_eps: float = NSFP_REL_EPS
    preparations: tuple = ()
    notes: tuple = field(default_factory=tuple)

    def options(self) -> dict:
        """The loader options this protocol fixes."""
        return dict(self.dataset_options)

    def preparation_for(self, method_name: Optional[str], dataset_name: Optional[str]) -> ScenePreparation:
        table = dict(self.preparations)
        for key in (f"method:{method_name}", f"dataset:{dataset_name}", "*"):
            if key in table:
                return table[key]
        return NO_PREPARATION

    def to_dict(self) -> dict:
        """JSON form for the run fingerprint (everything that changes a number)."""
        return {
            "name": self.name, "kind": self.kind, "dataset_options": {k: _jsonable(v) for k, v in self.dataset_options},
            "clip_mode": self.clip_mode, "clip_frames": self.clip_frames, "single_window": self.single_window,
            "metrics": self.metrics, "rel_eps": self.rel_eps,
            "preparations": {k: p.to_dict() for k, p in self.preparations},
        }


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


# -- the optical protocols -------------------------------------------------------------------------
#: method family -> (Sintel options, KITTI options, clip mode, frames, single window, Sintel script, KITTI script)
_OPTICAL_FAMILIES = {
    "pairs": ({"frames": 2, "clips": "tile"}, {"frames": 2}, "pairs", 2, False,
              "princeton-vl/RAFT evaluate.py: validate_sintel", "princeton-vl/RAFT evaluate.py: validate_kitti"),
    "videoflow-bof": ({"frames": 3, "clips": "windows", "step": 1, "repeat_first": 1, "scored_pairs": (1,)},
                      {"frames": 3}, "windows", 3, True,
                      "XiaoyuShi97/VideoFlow evaluate_BOFNet.py: validate_sintel (datasets_3frames.MpiSintel)",
                      "XiaoyuShi97/VideoFlow evaluate_BOFNet.py: validate_kitti (KITTITest, input_frames=3)"),
    "videoflow-mof": ({"frames": 5, "clips": "windows", "step": 3, "repeat_first": 1, "scored_pairs": (1, 2, 3)},
                      {"frames": 5}, "windows", 5, True,
                      "XiaoyuShi97/VideoFlow evaluate_MOFNet.py: validate_sintel (datasets_multiframes.MpiSintelTrain)",
                      "XiaoyuShi97/VideoFlow evaluate_MOFNet.py: validate_kitti (KITTITest, input_frames=5)"),
    "streamflow": ({"frames": 4, "clips": "tile"}, {"frames": 4, "pair_position": 2}, "sim-groups", 4, True,
                   "littlespray/StreamFlow evaluate_mf.py (mf_datasets.SintelMultiframeEval, nframes=4)",
                   "littlespray/StreamFlow evaluate_mf.py: validate_kitti_mf (KITTIMultiFrameEval, nframes=4)"),
}
_SINTEL_NOTE = ("Sintel invalid/ pixels are removed from the scored pixels (mmflow); the official scripts score "
                "every pixel: pass --option use_invalid=False for theirs")
_KITTI2012_NOTE = ("VideoFlow and StreamFlow publish no KITTI 2012 evaluation: their KITTI 2015 windows with the "
                   "KITTI 2012 devkit metrics")


def _optical_protocols() -> dict:
    out = {}
    for family, (sintel, kitti, mode, frames, single, s_script, k_script) in _OPTICAL_FAMILIES.items():
        suffix = "" if family == "pairs" else f"-{family}"
        what = "pairs" if family == "pairs" else f"{family} {frames}-frame windows"
        out[f"sintel{suffix}"] = Protocol(
            f"sintel{suffix}", "optical", f"MPI-Sintel training, {what}, pixel-pooled EPE", s_script, ("sintel",),
            tuple(sintel.items()), mode, frames, single, "sintel", notes=(_SINTEL_NOTE,))
        for year in ("kitti2015", "kitti2012"):
            kitti_mode = mode if family == "pairs" else "kitti-multiview"
            script = k_script if year == "kitti2015" else (
                "KITTI stereo/flow 2012 devkit evaluate_flow.cpp" + ("" if family == "pairs" else f" + {k_script}"))
            metrics = "KITTI 2012 devkit out2..out5 / Avg, image-mean" if year == "kitti2012" else "EPE image-mean, Fl-all pooled"
            notes = (_KITTI2012_NOTE,) if (year == "kitti2012" and family != "pairs") else ()
            out[f"{year}{suffix}"] = Protocol(
                f"{year}{suffix}", "optical", f"KITTI {year[5:]} training, {what} around _10 -> _11, {metrics}",
                script, (year,), tuple(kitti.items()), kitti_mode, frames, single, year, notes=notes)
    out["default"] = Protocol("default", "optical", "any optical dataset: the loader's clips, pixel-pooled metrics",
                              "mmflow-style pooled EPE / Fl (no official script)", (), (), "loader", 2, False, "default")
    return out


# -- the scene-flow protocols ----------------------------------------------------------------------
def _av2_preparations() -> tuple:
    optimised = dict(ground="labels", box=OPENSCENEFLOW_RANGE, fill="ego", ego_motion=True)
    return (
        ("method:nsfp", ScenePreparation(**optimised, method_options=(("compensate_ego", True), ("max_points", 8192)))),
        ("method:fnsf", ScenePreparation(**optimised, method_options=(("compensate_ego", True),))),
        ("method:scoop", ScenePreparation(**optimised, method_options=(("compensate_ego", True), ("max_points", 8192)))),
        ("method:flot", ScenePreparation(**optimised, method_options=(("compensate_ego", True), ("max_points", 8192)))),
    )


def _scene_protocols() -> dict:
    nsfp_sets = ("kitti-sf-flownet3d", "argoverse-nsfp", "nuscenes-nsfp")
    nsfp_script = "Lilac-Lee/Neural_Scene_Flow_Prior optimization.py + utils.scene_flow_metrics"
    return {
        "nsfp": Protocol(
            "nsfp", "scene", "NSFP release sets: 2048 random points per cloud, metrics on them, mean over samples",
            nsfp_script + " (--num_points 2048)", nsfp_sets, (), "sweep-pair", 2, metrics="nsfp",
            preparations=(("*", ScenePreparation(sample_points=2048, fill="nan")),),
            notes=("points are drawn uniformly; NSFP's Argoverse / nuScenes loaders draw 80 % of them from "
                   "tracked objects (mask1_tracks_flow), which is not reproduced",
                   "NSFP's KITTI numbers are on the sorted last 50 pairs: --split nsfp-test")),
        "nsfp-dense": Protocol(
            "nsfp-dense", "scene", "NSFP release sets, every point (--use_all_points), mean over samples",
            nsfp_script + " (--use_all_points)", nsfp_sets, (), "sweep-pair", 2, metrics="nsfp"),
        "fnsf": Protocol(
            "fnsf", "scene", "FastNSF sets (Waymo, Argoverse): every point, NSFP's metric code, mean over samples",
            "Lilac-Lee/FastNSF optimization.py + utils.scene_flow_metrics (copied from NSFP)",
            ("waymo-fnsf", "argoverse-nsfp"), (), "sweep-pair", 2, metrics="nsfp"),
        "scoop": Protocol(
            "scoop", "scene", "SCOOP KITTI sets: 35 m depth cut, KITTI_o every point, KITTI_s 8192 points, rel eps 1e-4",
            "itailang/SCOOP evaluate_scoop.py (compute_epe_test)", ("kitti-sf-flownet3d", "kitti-sf-hplflownet"),
            (("max_depth", 35.0),), "sweep-pair", 2, metrics="scoop", rel_eps=SCOOP_REL_EPS,
            preparations=(("dataset:kitti-sf-hplflownet", ScenePreparation(sample_points=8192, fill="nan")),),
            notes=("SCOOP's 8192 points are drawn independently per cloud with a fixed seed per sample",
                   "SCOOP's KITTI_t is --split scoop-test of kitti-sf-flownet3d (KITTI_o: all 150 pairs)")),
        "av2": Protocol(
            "av2", "scene", "Argoverse 2 challenge: every point in the eval mask, EPE 3-way and bucketed, ego motion",
            "argoverse/av2-api evaluation/scene_flow/eval.py + kylevedder/BucketedSceneFlowEval bucketed_epe.py",
            ("av2",), (), "sweep-pair", 2, metrics="av2", rel_eps=AV2_EPS, preparations=_av2_preparations(),
            notes=("nsfp / fnsf / scoop / flot run as OpenSceneFlow runs them: labelled (else RANSAC) ground removed, "
                   "cropped to +-51.2 x +-51.2 x [-3, 3] m, ego-compensated with the log's poses; removed points get "
                   "the ego-motion flow",
                   "the challenge scores every 5th pair (av2-api get_eval_subset): pass --option every=5")),
        "scene": Protocol(
            "scene", "scene", "any lidar set: every point, NSFP's metric code, mean over samples",
            nsfp_script, (), (), "sweep-pair", 2, metrics="nsfp"),
    }


PROTOCOLS: dict[str, Protocol] = {**_optical_protocols(), **_scene_protocols()}

_SCENE_DEFAULTS = {"av2": "av2", "argoverse-nsfp": "nsfp", "nuscenes-nsfp": "nsfp", "kitti-sf-flownet3d": "nsfp",
                   "kitti-sf-hplflownet": "scoop", "waymo-fnsf": "fnsf"}


def list_protocols() -> list[str]:
    return sorted(PROTOCOLS)


def method_family(method_name: Optional[str]) -> str:
    """``videoflow-bof`` / ``videoflow-mof`` / ``streamflow`` for those networks, else ``pairs``."""
    return method_name if method_name in METHOD_WINDOWS else "pairs"


def default_protocol(kind: str, dataset_name: str, method_name: Optional[str] = None) -> Protocol:
    """The published protocol of ``dataset_name`` for ``method_name`` (None: predictions files)."""
    if kind == "optical":
        if dataset_name in ("sintel", "kitti2015", "kitti2012"):
            family = method_family(method_name)
            return PROTOCOLS[dataset_name if family == "pairs" else f"{dataset_name}-{family}"]
        return PROTOCOLS["default"]
    if dataset_name == "kitti-sf-flownet3d" and method_name in ("scoop", "flot"):
        return PROTOCOLS["scoop"]
    return PROTOCOLS[_SCENE_DEFAULTS.get(dataset_name, "scene")]


def get_protocol(name: Optional[str], kind: str, dataset_name: str, method_name: Optional[str] = None) -> Protocol:
    """``PROTOCOLS[name]`` checked against the dataset kind, or the default protocol when ``name`` is None."""
    if name is None:
        return default_protocol(kind, dataset_name, method_name)
    if name not in PROTOCOLS:
        raise UnknownNameError(f"evaluate: unknown protocol {name!r}; valid choices: {', '.join(list_protocols())}")
    protocol = PROTOCOLS[name]
    if protocol.kind != kind:
        raise UnknownNameError(
            f"evaluate: protocol {name!r} scores {protocol.kind} flow, dataset {dataset_name!r} is {kind}; "
            f"valid choices: {', '.join(n for n in list_protocols() if PROTOCOLS[n].kind == kind)}")
    return protocol


def with_rel_eps(protocol: Protocol, rel_eps: Optional[float]) -> Protocol:
    """The protocol with another ``rel`` eps (recorded as a note)."""
    if rel_eps is None or float(rel_eps) == protocol.rel_eps:
        return protocol
    note = f"rel eps {float(rel_eps):g} instead of the protocol's {protocol.rel_eps:g}"
    return replace(protocol, rel_eps=float(rel_eps), notes=protocol.notes + (note,))


def merged_dataset_options(protocol: Protocol, user: Mapping) -> tuple[dict, list[str]]:
    """Loader options: the protocol's, then the user's on top; returns them and a note per override."""
    options = protocol.options()
    notes = [f"dataset option {k}={user[k]!r} replaces the protocol's {options[k]!r}"
             for k in sorted(user) if k in options and user[k] != options[k]]
    options.update(user)
    return options, notes


def run_notes(protocol: Protocol, dataset_name: str, method_name: Optional[str], clip_frames: int) -> list[str]:
    """Deviations known before the run: a protocol used off its datasets, a method window longer than the clip."""
    notes = []
    if protocol.datasets and dataset_name not in protocol.datasets:
        notes.append(f"protocol {protocol.name} is defined for {', '.join(protocol.datasets)}; applied to {dataset_name}")
    window = METHOD_WINDOWS.get(method_name or "")
    if protocol.kind == "optical" and window and clip_frames < window:
        notes.append(f"{method_name} runs {window}-frame windows but receives {clip_frames}-frame clips: "
                     "its windows repeat edge frames (not its published protocol)")
    return notes


# -- scoring ---------------------------------------------------------------------------------------
#: count keys a sample adds to its partial -> note printed once with the number of samples
_NOTE_KEYS = {
    "note:repeated_frames": "samples had KITTI multiview frames absent: edge frames _10 / _11 repeated",
    "note:short_clip": "samples were shorter than the protocol's window: the method's own edge rule filled them",
    "av2:no_ground_labels": "samples had no ground labels: their ground points were scored "
                            "(the official AV2 eval masks exclude ground)",
    "av2:no_class_labels": "samples had no class labels: no EPE 3-way / bucketed EPE for them",
    "av2:no_ego_motion": "samples had no ego motion: motion split from the labels' is_dynamic where present, "
                         "no bucketed EPE (it needs ego-compensated flow)",
    "av2:no_ego_no_dynamic": "samples had neither ego motion nor is_dynamic labels: no EPE 3-way for them",
    "labels:bsfe": "samples had BucketedSceneFlowEval labels (classes from -1, ego-free flow): converted to av2-api ids "
                   "and ego-inclusive flow",
    "labels:av2": "samples had av2-api labels (category ids from 0, ego-inclusive flow): read as they are",
    "prep:ransac_ground": "clouds had no ground labels: ground removed by a RANSAC plane",
    "prep:no_ego_fill": "samples had no ego motion: removed points filled with the nearest kept point's flow",
}


def _optical_partial(protocol: Protocol, sample, pred) -> dict:
    from .optical import PROTOCOLS as FAMILIES
    from .optical import optical_flow_partial

    family = FAMILIES[protocol.metrics]
    foreground = sample.meta.get("foreground") if family.fg_bg else None
    partial = optical_flow_partial(pred, sample.flow, sample.valid, sample.occluded, foreground=foreground,
                                   outlier_px=family.outlier_px)
    if sample.meta.get("repeated_frames"):
        partial["counts"]["note:repeated_frames"] = 1
    return partial


def _merge(*parts: dict) -> dict:
    sums, counts = {}, {}
    for part in parts:
        sums.update(part["sums"])
        counts.update(part["counts"])
    return {"sums": sums, "counts": counts}


def _av2_partial(protocol: Protocol, sample, pred, mask) -> dict:
    from . import scene

    parts = [scene.scene_flow_partial(pred, sample.flow, mask, protocol.rel_eps)]
    dynamic = sample.meta.get("dynamic")
    ego = sample.ego_motion
    if sample.classes is None:
        parts.append({"sums": {}, "counts": {"av2:no_class_labels": 1}})
    elif ego is None and dynamic is None:
        parts.append({"sums": {}, "counts": {"av2:no_ego_no_dynamic": 1}})
    else:
        parts.append(scene.av2_threeway_partial(pred, sample.flow, sample.pc1, sample.classes, ego, sample.valid,
                                                sample.ground1, dynamic=dynamic))
        if ego is not None:
            parts.append(scene.bucketed_partial(pred, sample.flow, sample.pc1, sample.classes, ego, sample.valid, sample.ground1))
        else:
            parts.append({"sums": {}, "counts": {"av2:no_ego_motion": 1}})
    if sample.ground1 is None:
        parts.append({"sums": {}, "counts": {"av2:no_ground_labels": 1}})
    convention = sample.meta.get("label_convention")
    if convention in ("bsfe", "av2"):  # the report says which convention the label files were read in
        parts.append({"sums": {}, "counts": {f"labels:{convention}": 1}})
    return _merge(*parts)


def scored_mask(protocol: Protocol, sample, scored=None) -> Optional[np.ndarray]:
    """``(N,)`` bool: the points of a scene-flow ``sample`` that ``protocol`` scores (its valid points,
    ``scored`` of a sampled protocol, AV2's eval mask: no ground, within 50 m); None: every point."""
    mask = sample.valid
    if scored is not None:
        mask = (np.ones(len(sample.pc1), bool) if sample.valid is None else sample.valid) & scored
    if protocol.metrics == "av2":
        from . import scene

        mask = scene.av2_eval_mask(sample.pc1, mask, sample.ground1)
    return mask


def sample_partial(protocol: Protocol, sample, pred, scored=None, prep_counts: Optional[dict] = None) -> dict:
    """The accumulator partial of one sample under ``protocol``.

    Args:
        pred: ``(P, 2, H, W)`` optical flows of the scored pairs, or ``(N, 3)`` scene flow.
        scored: scene flow: ``(N,)`` bool, the points a sampled protocol scores (None: every point).
        prep_counts: counts the preparation reported (RANSAC ground, fills), added as note keys.
    """
    if protocol.kind == "optical":
        return _optical_partial(protocol, sample, pred)
    from . import scene

    mask = scored_mask(protocol, sample, scored)
    extra = {"sums": {}, "counts": dict(prep_counts or {})}
    if protocol.metrics == "av2":
        return _merge(_av2_partial(protocol, sample, pred, mask), extra)
    return _merge(scene.scene_flow_partial(pred, sample.flow, mask, protocol.rel_eps), extra)


def finalize_metrics(protocol: Protocol, acc: Accumulator) -> dict:
    """Dataset (or per-sample) metrics from an accumulator, under ``protocol``."""
    if protocol.kind == "optical":
        from .optical import PROTOCOLS as FAMILIES
        from .optical import optical_flow_metrics

        return optical_flow_metrics(acc, FAMILIES[protocol.metrics])
    from . import scene

    metrics = scene.scene_flow_metrics(acc, protocol.rel_eps)
    if protocol.metrics == "av2":
        # the NSFP 3-D angle, not av2-api's space-time angle (flow with 0.1 s appended as a 4th coordinate)
        metrics["angle_error_3d_nsfp"] = metrics.pop("angle_error")
        if "av2:bg_static:n" in acc.counts:
            metrics.update(scene.av2_threeway_metrics(acc))
        if any(k.startswith("bkt:") for k in acc.counts):
            metrics.update(scene.bucketed_metrics(acc))
    return metrics


def protocol_report(protocol: Protocol, acc: Accumulator, dataset_options: Mapping, preparation: Optional[ScenePreparation],
                    notes: list) -> dict:
    """The report's ``protocol`` entry: name, clips, options, preparation, reductions and every note."""
    info = {"name": protocol.name, "kind": protocol.kind, "summary": protocol.summary, "script": protocol.script,
            # what the method received: a user's --option frames=N overrides the protocol's window
            "clip_frames": int(dataset_options.get("frames", protocol.clip_frames)), "clip_mode": protocol.clip_mode,
            "dataset_options": {k: v if isinstance(v, (str, int, float, bool)) or v is None else repr(v)
                                for k, v in sorted(dataset_options.items())},
            "metrics": protocol.metrics}
    all_notes = list(protocol.notes) + list(notes)
    if protocol.kind == "optical":
        from .optical import PROTOCOLS as FAMILIES
        from .optical import occlusion_coverage

        family = FAMILIES[protocol.metrics]
        info["single_window"] = protocol.single_window
        info["default_reductions"] = {b: family.reduction(b) for b in family.base_metrics}
        if occlusion_coverage(acc) == "partial":
            all_notes.append("occlusion masks exist for only some scored pairs: no dataset-level _noc / _occ "
                             "(matched / unmatched) metrics; the per-sample entries of the pairs with masks have them")
    else:
        info["rel_eps"] = protocol.rel_eps
        info["default_reduction"] = "sample"
        info["preparation"] = (preparation or NO_PREPARATION).to_dict()
        info["av2"] = protocol.metrics == "av2"
    for key, text in _NOTE_KEYS.items():
        if acc.n(key):
            all_notes.append(f"{acc.n(key)} {text}")
    info["notes"] = all_notes
    return info


__all__ = [
    "METHOD_WINDOWS", "NO_PREPARATION", "OPENSCENEFLOW_RANGE", "PROTOCOLS", "Protocol", "ScenePreparation",
    "default_protocol", "finalize_metrics", "get_protocol", "list_protocols", "merged_dataset_options",
    "method_family", "protocol_report", "run_notes", "sample_partial", "with_rel_eps",
]
