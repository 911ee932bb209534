"""Runs that never mix: the resume fingerprint refuses every change that alters a number, malformed
records and concurrent runs are refused, reports escape data strings and are written JSON last,
prediction paths stay inside their folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from motionflow.datasets.synthetic import synthetic_clip
from motionflow.errors import FormatError
from motionflow.eval import evaluate, write_prediction
from motionflow.eval.engines import SampleList
from motionflow.eval.records import run_lock
from motionflow.types import FlowPrediction, SceneFlowSample

OFFSET = np.array([0.3, 0.4], np.float32)[None, :, None, None]


def _clips(n=2, size=(24, 32), name="synthetic-flow"):
    samples = []
    for i in range(n):
        s = synthetic_clip(2, size, seed=i)
        s.id = f"clip{i}"
        samples.append(s)
    return SampleList(samples, name=name)


class _Scaled:
    """GT * scale + offset from the sample: a configurable method object (``scale`` is an option)."""

    name = "scaled-test"
    clip_length = 2

    def __init__(self, samples, scale=1.0):
        self.by_bytes = {s.frames.tobytes(): s for s in samples}
        self.scale = scale

    def __call__(self, frames):
        import torch

        s = self.by_bytes[frames[0].to(torch.uint8).numpy().tobytes()]
        return FlowPrediction(flow=torch.from_numpy(s.flow * self.scale + OFFSET)[None])


def _refused(match, fn, *args, **kwargs):
    with pytest.raises(FormatError, match=match) as info:
        fn(*args, **kwargs)
    assert "--no-resume" in str(info.value)
    return str(info.value)


def test_resume_refuses_every_change_that_alters_a_number(tmp_path, monkeypatch):
    import motionflow.eval.report

    ds = _clips()
    out = tmp_path / "r.json"
    method = _Scaled(ds.samples)
    evaluate(ds, method, out=out, progress=False)
    method.scale = 2.0  # a re-configured method object: another method
    _refused(r"another evaluation \(method\.object\.attributes\.scale: 1\.0 -> 2\.0\)", evaluate, ds, method, out=out, progress=False)
    method.scale = 1.0
    # a dataset object with other samples
    _refused(r"dataset\.ids_sha256", evaluate, _clips(3), method, out=out, progress=False)
    # another protocol over the same samples
    _refused(r"protocol\.name: \"default\" -> \"sintel\"", evaluate, ds, method, out=out, protocol="sintel", progress=False)
    # prediction files asked for now but not written by the finished samples
    _refused(r"write_predictions", evaluate, ds, method, out=out, write_predictions=tmp_path / "w", progress=False)
    # other code: a new commit of the checkout
    monkeypatch.setattr(motionflow.eval.report, "git_sha", lambda start=None: "1" * 40)
    _refused(r"git_sha: \"0000", evaluate, ds, method, out=out, progress=False)
    monkeypatch.setattr(motionflow.eval.report, "git_sha", lambda start=None: "0" * 40)
    assert evaluate(ds, method, out=out, progress=False).runtime["samples_resumed"] == 2  # unchanged: resumes
    assert evaluate(ds, method, out=out, protocol="sintel", resume=False, progress=False).protocol["name"] == "sintel"


def test_resume_refuses_a_network_with_other_iterations_and_another_checkpoint(tmp_path):
    import torch

    from motionflow.models.raft import RAFT
    from motionflow.registry import get_optical_flow_method

    ds = _clips(1)
    out = tmp_path / "r.json"
    net = get_optical_flow_method("raft", weights="random", iters=2, device="cpu")
    evaluate(ds, net, out=out, progress=False)
    net.iters = 3
    _refused(r"method\.object\.iters: 2 -> 3", evaluate, ds, net, out=out, progress=False)
    net.iters = 2
    torch.nn.init.zeros_(next(net.model.parameters()))
    _refused(r"method\.object\.weights_sha256", evaluate, ds, net, out=out, progress=False)
    # a registered method by name: the checkpoint file is identified by size and mtime, not only its path
    ckpt = tmp_path / "raft.pth"
    torch.save(RAFT().state_dict(), ckpt)
    opts = {"checkpoint": str(ckpt), "iters": 1}
    evaluate(ds, "raft", method_options=opts, out=tmp_path / "named.json", progress=False)
    torch.save(RAFT().state_dict(), ckpt)  # retrained weights under the same name
    _refused(r"method\.checkpoint\.mtime_ns", evaluate, ds, "raft", method_options=opts, out=tmp_path / "named.json", progress=False)
    _refused(r"method\.options\.iters: 1 -> 2", evaluate, ds, "raft", method_options={**opts, "iters": 2},
             out=tmp_path / "named.json", progress=False)


def test_resume_refuses_a_sintel_object_of_the_other_pass(sintel_root, tmp_path):
    from motionflow.datasets.sintel import Sintel

    root = sintel_root
    pred = tmp_path / "pred"
    for n in (1, 2, 3):
        write_prediction(pred, "sintel", Sintel(root, max_samples=3)[n - 1], np.zeros((1, 2, 436, 1024), np.float32))
    out = tmp_path / "r.json"
    evaluate(Sintel(root, pass_name="clean"), predictions_dir=pred, out=out, progress=False)
    _refused(r"dataset\.object\.attributes\.pass_name: \"clean\" -> \"final\"", evaluate, Sintel(root, pass_name="final"),
             predictions_dir=pred, out=out, progress=False)
    # by name: the option is part of the dataset descriptor
    evaluate("sintel", predictions_dir=pred, root=root, dataset_options={"pass": "clean"}, out=tmp_path / "n.json", progress=False)
    _refused(r"dataset\.options\.pass: \"clean\" -> \"final\"", evaluate, "sintel", predictions_dir=pred, root=root,
             dataset_options={"pass": "final"}, out=tmp_path / "n.json", progress=False)


@pytest.mark.parametrize("line, what", [
    ("[1, 2]", r"line 3: expected a JSON object \(a record\), found list"),
    ('{"index": 1, "id": "clip1", "metrics": {}}', r"line 3: expected record key 'partial' \(dict\), found nothing"),
    ('{"index": "1", "id": "clip1", "metrics": {}, "partial": {}}', r"line 3: expected record key 'index' \(int\), found str"),
])
def test_malformed_records_raise_a_format_error_naming_file_and_line(tmp_path, line, what):
    ds = _clips()
    out = tmp_path / "r.json"
    evaluate(ds, _Scaled(ds.samples), out=out, max_samples=1, progress=False)
    records = tmp_path / "r.samples.jsonl"
    with open(records, "a") as fh:
        fh.write(line + "\n" + records.read_text().splitlines()[1] + "\n")  # not the torn last line
    with pytest.raises(FormatError, match=r"r\.samples\.jsonl: " + what):
        evaluate(ds, _Scaled(ds.samples), out=out, progress=False)


def test_a_second_run_on_the_same_output_is_refused_while_the_first_holds_it(tmp_path):
    ds = _clips(1)
    out = tmp_path / "r.json"
    with run_lock(tmp_path / "r.samples.jsonl"):
        with pytest.raises(FormatError, match=r"r\.lock: another evaluation is writing to this output"):
            evaluate(ds, _Scaled(ds.samples), out=out, progress=False)
        assert not out.exists() and not (tmp_path / "r.samples.jsonl").exists()
    assert evaluate(ds, _Scaled(ds.samples), out=out, progress=False).num_samples == 1  # released


# -- reports ------------------------------------------------------------------------------------------
def test_reports_escape_data_strings_and_write_json_last(tmp_path, monkeypatch):
    import motionflow.io

    ds = _clips(1, name="=HYPERLINK(\"http://x\")|name\nsecond line")
    method = _Scaled(ds.samples)
    method.name = "-2+3 | <b>bold</b>"
    written = []
    real = motionflow.io.atomic_write_bytes
    monkeypatch.setattr(motionflow.io, "atomic_write_bytes", lambda path, data: (written.append(path.suffix), real(path, data))[1])
    evaluate(ds, method, out=tmp_path / "r.json", progress=False)
    assert written[-1] == ".json" and {".csv", ".md"} <= set(written[:-1])  # the source of truth last
    import csv

    rows = list(csv.reader((tmp_path / "r.csv").open()))
    assert rows[1][6] == "'=HYPERLINK(\"http://x\")|name\nsecond line" and rows[1][8] == "'-2+3 | <b>bold</b>"
    head = (tmp_path / "r.md").read_text().splitlines()[0]
    assert head.startswith("**=HYPERLINK(\"http://x\")\\|name second line**")
    assert "method -2+3 \\| \\<b\\>bold\\</b\\>" in head
    md_rows = [r for r in (tmp_path / "r.md").read_text().splitlines() if r.startswith("| ")]
    assert all(r.count("|") == 6 for r in md_rows)  # five cells per row: nothing broke out of the table
    data = json.loads((tmp_path / "r.json").read_text())  # strict JSON: NaN written as null
    assert data["metrics"]["epe_s40+"]["value"] is None and data["dataset"] == ds.name


def test_write_prediction_keeps_every_file_inside_its_folder(tmp_path):
    clip = synthetic_clip(2, (8, 8), seed=0)
    for bad in ("../escaped", "a/../../escaped", "/tmp/escaped-abs"):
        clip.id = bad
        with pytest.raises(FormatError, match=rf"sample id {bad!r}: its prediction file .* (leaves the folder|is an absolute path)"):
            write_prediction(tmp_path / "pred", "synthetic-flow", clip, clip.flow)
    assert not (tmp_path / "escaped.flo").exists() and not list(tmp_path.rglob("*.flo"))
    pair = SceneFlowSample("../../x", np.zeros((4, 3), np.float32), np.zeros((4, 3), np.float32))
    with pytest.raises(FormatError, match=r"sample id '\.\./\.\./x'"):
        write_prediction(tmp_path / "pred", "pairs", pair, np.zeros((4, 3), np.float32))
    clip.id = "scene/ok"
    assert write_prediction(tmp_path / "pred", "synthetic-flow", clip, clip.flow)[0] == tmp_path / "pred" / "scene" / "ok.flo"
