"""Evaluation reports as pages: REPORT.html beside the JSON, pictures of the first samples, a Rerun recording."""

import re
from urllib.parse import unquote

import numpy as np
import pytest

from motionflow.cli.main import main
from motionflow.types import FlowSample, SceneFlowSample

EVIL = '<script>document.title="pwned"</script>'


def test_eval_cli_writes_report_html_pictures_and_recording(tmp_path, capsys):
    out = tmp_path / "run" / "REPORT.json"
    rrd = tmp_path / "run" / "lidar.rrd"
    rc = main(["eval", "--dataset", "synthetic-lidar", "--method", "zero", "--out", str(out), "--max-samples", "2",
               "--viz", "1", "--rerun", str(rrd), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    page = out.with_suffix(".html").read_text()
    sources = [unquote(s) for s in re.findall(r'<img src="([^"]+)"', page)]
    assert sources == ["REPORT_viz/sample_00000.png"]  # --viz 1: the first sample only
    assert (out.parent / sources[0]).stat().st_size > 10_000 and "EPE3D" in page and "<td>m</td>" in page
    from rerun.chunk import RrdReader

    entities = {c.entity_path for c in RrdReader(rrd).stream()}
    assert {"/lidar/pc1", "/lidar/pc2", "/lidar/flow", "/lidar/gt_flow", "/lidar/error", "/metrics/epe3d"} <= entities
    # usage errors: a recording of an optical dataset, a negative count
    assert main(["eval", "--dataset", "synthetic-flow", "--method", "zero", "--out", str(tmp_path / "o.json"),
                 "--rerun", str(rrd)]) == 2
    assert "--rerun: recordings are for lidar datasets" in capsys.readouterr().err
    assert main(["eval", "--dataset", "synthetic-lidar", "--method", "zero", "--out", str(tmp_path / "o.json"),
                 "--viz", "-1"]) == 2


def test_report_page_of_a_hostile_sample_id_is_inert(tmp_path):
    from motionflow.eval import evaluate

    rng = np.random.default_rng(0)
    pc1 = rng.uniform(-5, 5, (200, 3)).astype(np.float32)
    samples = [SceneFlowSample(id=f"{EVIL}/../../x{i}", pc1=pc1, pc2=pc1 + 0.1, flow=np.full((200, 3), 0.1, np.float32))
               for i in range(2)]
    out = tmp_path / "REPORT.json"
    evaluate(samples, "zero", out=out, progress=False, viz_dir=tmp_path / "REPORT_viz", viz_samples=2)
    html = out.with_suffix(".html").read_text()
    assert "<script" not in html and html.count("&lt;script&gt;") >= 2
    # pictures are named by index, never by the id (which holds ../)
    assert sorted(p.name for p in (tmp_path / "REPORT_viz").glob("*.png")) == ["sample_00000.png", "sample_00001.png"]


def test_optical_sample_view_is_flow_and_epe(tmp_path):
    from motionflow.datasets.synthetic import synthetic_clip
    from motionflow.io import read_image
    from motionflow.viz.samples import read_sample_views, write_sample_view

    clip = synthetic_clip(num_frames=2, size=(64, 96), seed=0)
    sample = FlowSample(id="a/b", frames=clip.frames, flow=clip.flow, valid=clip.valid)
    write_sample_view(tmp_path, 3, sample, clip.flow + 1.0, {"epe": 1.414})
    (view,) = read_sample_views(tmp_path)
    assert view["index"] == 3 and view["caption"] == "a/b: EPE 1.414 px" and view["arrays"] is None
    image = read_image(view["picture"])
    assert image.shape[0] >= 64 and image.shape[1] > 2 * 96  # flow picture + EPE map with its colour bar


def test_eval_picture_scores_the_points_the_metric_scores_and_its_json_is_strict(tmp_path, monkeypatch):
    """AV2: ground points and points beyond 50 m are not scored, so the picture's error panel must not
    count them either (it did: its EPE3D disagreed with the caption); metrics without points (no
    foreground here) are null in the sample JSON, never the NaN literal."""
    import json

    from motionflow.eval import evaluate
    from motionflow.viz import points

    pc1 = np.array([[5.0, 0.0, 0.0], [0.0, 8.0, 0.0], [3.0, 3.0, -1.8], [80.0, 0.0, 0.0]], np.float32)
    gt = np.zeros((4, 3), np.float32)  # a static scene, no ego motion
    pred = gt.copy()
    pred[2:] += 10.0  # 10 m wrong on the ground point and on the far point: neither is scored
    sample = SceneFlowSample("log/0", pc1, pc1, flow=gt, classes=np.zeros(4, np.int64),
                             ground1=np.array([False, False, True, False]), ego_motion=np.eye(4))

    class Fixed:
        name = "fixed-test"

        def __call__(self, a, b):
            return pred

    seen = {}
    draw = points.scene_flow_picture

    def spy(pc, flow, **kw):
        seen["valid"] = np.asarray(kw["valid"])
        return draw(pc, flow, **kw)

    monkeypatch.setattr(points, "scene_flow_picture", spy)
    report = evaluate([sample], Fixed(), protocol="av2", progress=False, viz_dir=tmp_path / "v", viz_samples=1)
    assert report.value("epe_bg_static") == pytest.approx(0.0, abs=1e-6)
    assert seen["valid"].tolist() == [True, True, False, False]
    meta = json.loads((tmp_path / "v" / "sample_00000.json").read_text(),
                      parse_constant=lambda c: pytest.fail(f"non-JSON literal {c}"))
    assert None in meta["metrics"].values()


def test_json_safe_and_strict_dumps():
    from motionflow.io.strict_json import json_safe, strict_dumps

    assert strict_dumps({"a": float("nan"), "b": np.float32(1.5), 1: [np.inf, (2, -np.inf)]}) == \
        '{"a": null, "b": 1.5, "1": [null, [2, null]]}'
    assert json_safe(np.int64(3)) == 3 and type(json_safe(np.int64(3))) is int
