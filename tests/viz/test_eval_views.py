"""Evaluation reports as pages: REPORT.html beside the JSON, pictures of the first samples, a Rerun recording."""

import re
from urllib.parse import unquote

import numpy as np

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
