import json

import numpy as np
import pytest

from motionflow.cli.main import main
from motionflow.io import read_image


def test_demo_writes_pictures_and_metrics(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--size", "64x96", "--frames", "3",
                 "--optical-method", "opencv-dis", "--scene-method", "nn"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "opencv-dis" in printed and "nn" in printed and "zero" in printed
    report = json.loads((out / "metrics.json").read_text())
    # the method and its baseline were both run and scored on the same generated data
    assert set(report["optical_flow"]) == {"opencv-dis", "_data"}
    dis = report["optical_flow"]["opencv-dis"]["metrics"]
    assert dis["epe"]["reduction"] in ("pixel", "image") and 0 < dis["epe"]["value"] < 5
    scene = report["scene_flow"]
    assert set(scene) == {"nn", "zero", "_data"}
    # the baseline knows the ego motion: only the moving boxes are wrong
    assert 0.0 < scene["zero"]["metrics"]["epe3d"] < 0.2
    accumulation = report["accumulation"]["metrics"]
    assert accumulation["sweeps"] == 5 and accumulation["median_error_static_m"] < 0.05
    for name in ["sceneflow/accumulated.png", "frames/frame_0000.png", "flow/gt_0001.png", "flow/opencv-dis_0001.png",
                 "flow/opencv-dis_error_0000.png", "flow/color_wheel.png", "sceneflow/gt.png", "sceneflow/nn.png"]:
        image = read_image(out / name)
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    assert read_image(out / "flow" / "gt_0000.png").shape == (64, 96, 3)


def test_demo_rejects_a_bad_size(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--size", "big"]) == 1
    assert "--size: expected HxW" in capsys.readouterr().err


def test_demo_unknown_method_is_bad_usage(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--size", "64x96", "--optical-method", "nope"]) == 2
    assert "valid choices" in capsys.readouterr().err


def test_demo_defaults_beat_their_baselines(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--size", "96x128", "--frames", "3"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    optical, scene = report["optical_flow"], report["scene_flow"]
    assert set(optical) == {"classical", "opencv-dis", "_data"} and set(scene) == {"rigid", "zero", "_data"}
    assert optical["classical"]["metrics"]["epe"]["value"] < optical["opencv-dis"]["metrics"]["epe"]["value"]
    assert scene["rigid"]["metrics"]["epe3d"] < 0.5 * scene["zero"]["metrics"]["epe3d"]
    assert (out / "sceneflow" / "rigid.png").exists()
