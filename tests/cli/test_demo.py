import json
import re
import sys
from pathlib import Path
from urllib.parse import unquote

import numpy as np

from motionflow.cli.main import main
from motionflow.io import read_image


def _strict_json(path: Path) -> dict:
    def refuse(token):
        raise AssertionError(f"{path} holds the bare token {token} (not JSON)")

    return json.loads(path.read_text(), parse_constant=refuse)


def _page_sources(page: Path) -> list:
    return [unquote(src) for src in re.findall(r'<img src="([^"]+)"', page.read_text())]


def test_demo_writes_pictures_and_metrics(tmp_path, capsys, monkeypatch):
    # without matplotlib the optical pictures and every number still come out; scene pictures are skipped
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--size", "64x96", "--frames", "3",
                 "--optical-method", "opencv-dis", "--scene-method", "nn"])
    assert code == 0
    captured = capsys.readouterr()
    assert "opencv-dis" in captured.out and "nn" in captured.out and "zero" in captured.out
    assert captured.err.count("notice: scene-flow pictures skipped") == 1 and "motionflow[viz]" in captured.err
    report = _strict_json(out / "metrics.json")
    # the method and its baseline were both run and scored on the same generated data, with units
    assert set(report["optical_flow"]) == {"opencv-dis", "_data"}
    dis = report["optical_flow"]["opencv-dis"]["metrics"]
    assert (dis["epe"]["unit"], dis["px1"]["unit"], dis["fl_all"]["unit"]) == ("px", "fraction", "%")
    # zero flow scores the clip's mean |gt| (1.86 px here); DIS must be far better than that
    from motionflow.datasets.synthetic import synthetic_clip

    clip = synthetic_clip(num_frames=3, size=(64, 96), seed=0)
    zero_epe = float(np.linalg.norm(clip.flow, axis=1)[clip.valid].mean())
    assert dis["epe"]["reduction"] in ("pixel", "image") and dis["epe"]["value"] < 0.5 * zero_epe
    scene = report["scene_flow"]
    assert set(scene) == {"nn", "zero", "_data"}
    assert scene["zero"]["metrics"]["epe3d"]["unit"] == "m" and scene["zero"]["metrics"]["acc3d_strict"]["unit"] == "fraction"
    # the baseline knows the ego motion: only the moving boxes are wrong
    assert 0.0 < scene["zero"]["metrics"]["epe3d"]["value"] < 0.2
    accumulation = report["accumulation"]["metrics"]
    assert accumulation["sweeps"] == 5 and accumulation["median_error_static_m"] < 0.05
    for name in ["frames/frame_0000.png", "flow/gt_0001.png", "flow/opencv-dis_0001.png", "flow/opencv-dis_epe_0000.png",
                 "flow/opencv-dis_kitti_0000.png", "flow/color_wheel.png"]:
        image = read_image(out / name)
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    assert read_image(out / "flow" / "gt_0000.png").shape == (64, 96, 3)
    assert not (out / "sceneflow").exists()
    page = (out / "index.html").read_text()
    assert "scene-flow pictures skipped" in page and "<script" not in page


def test_demo_rejects_a_bad_size(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--size", "big"]) == 1
    assert "--size: expected HxW" in capsys.readouterr().err


def test_demo_unknown_method_is_bad_usage(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--size", "64x96", "--optical-method", "nope"]) == 2
    assert "valid choices" in capsys.readouterr().err


def test_demo_defaults_beat_their_baselines_and_the_page_shows_them(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--size", "96x128", "--frames", "3"]) == 0
    report = _strict_json(out / "metrics.json")
    optical, scene = report["optical_flow"], report["scene_flow"]
    assert set(optical) == {"classical", "opencv-dis", "_data"} and set(scene) == {"rigid", "zero", "_data"}
    assert optical["classical"]["metrics"]["epe"]["value"] < optical["opencv-dis"]["metrics"]["epe"]["value"]
    assert scene["rigid"]["metrics"]["epe3d"]["value"] < 0.5 * scene["zero"]["metrics"]["epe3d"]["value"]
    sources = _page_sources(out / "index.html")
    for name in ("sceneflow/rigid.png", "sceneflow/rigid_side.png", "sceneflow/zero.png", "sceneflow/accumulated.png",
                 "flow/classical_0000.png", "flow/classical_kitti_0000.png", "frames/frame_0000.png"):
        assert name in sources
    for src in sources:  # every picture on the page exists
        assert read_image(out / src).ndim == 3
    bev = read_image(out / "sceneflow" / "rigid.png")
    assert bev.shape[1] > 2 * bev.shape[0]  # estimate, ground truth and error side by side
