"""Static HTML pages: escaping of data strings, picture paths, and a real browser (headless Chromium)."""

import html
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from motionflow.errors import FormatError
from motionflow.io import write_image
from motionflow.viz import epe_picture, flow_picture, kitti_error_picture, scene_flow_picture
from motionflow.viz.page import Fields, Gallery, Table, picture_src, render_page, write_page, write_report_page

EVIL = '<script>document.title="pwned"</script><img src=x onerror="document.title=1">'


def _report(pictures=()):
    return {
        "dataset": "synthetic-lidar", "split": EVIL, "method": "nsfp",
        "protocol": {"name": "nsfp", "notes": [EVIL], "dataset_options": {"root": "/data/<b>x</b>"}},
        "metrics": {"epe3d": {"value": 0.1234, "unit": "m", "reduction": "sample", "alternatives": {"point": None}},
                    "acc3d_strict": {"value": float("nan"), "reduction": "sample"}},
        "num_samples": 2,
        "per_sample": [{"id": EVIL, "index": 0, "metrics": {"epe3d": 0.2}, "seconds": 1.5},
                       {"id": "=cmd|' /C calc'!A0", "index": 1, "metrics": {"epe3d": None}, "seconds": 1.0}],
        "runtime": {"seconds_per_sample": 1.25}, "environment": {"motionflow": "0.1.0"},
    }


def test_every_data_string_is_escaped():
    text = render_page("t <i>", [Fields("Protocol", {"k<": EVIL})]) + write_report_page.__doc__
    page = render_page(EVIL, [Table(EVIL, [EVIL], [[EVIL, 1.5, None, float("nan")]], note=EVIL),
                              Fields(EVIL, {EVIL: {"nested": EVIL}}), Gallery(EVIL, [("a.png", EVIL)])])
    assert "<script" not in page and "<img src=x" not in page and "onerror=\"" not in page
    assert page.count("&lt;script&gt;") >= 5 and "<style>" in page and text
    assert "<td class=num>1.5</td>" in page and page.count("<td>-</td>") == 1  # None and NaN shown as '-'
    assert page.count("<td class=num>-</td>") == 1


def test_picture_paths_stay_inside_the_page_folder():
    assert picture_src("flow/a b#1.png") == "flow/a%20b%231.png"
    assert picture_src("x\\y.png") == "x/y.png"
    for bad in ("../secret.png", "/etc/passwd", "a/../../b.png", "javascript:alert(1)", "C:/x.png", ""):
        with pytest.raises(FormatError, match="relative path inside"):
            picture_src(bad)


def _chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("headless Chromium is not installed (.ci/run installs the Debian package 'chromium')")
        pytest.skip("headless Chromium is not installed (apt-get install -y chromium)")
    return path


def _browser(tmp_path, *args, timeout=90):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    return subprocess.run([_chromium(), *flags, *args], capture_output=True, text=True, timeout=timeout)


_CHECK = """<script>window.addEventListener('load', () => { const pre = document.createElement('pre');
pre.id = 'mf-check'; pre.textContent = JSON.stringify({title: document.title, scripts: document.scripts.length,
images: [...document.images].map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])});
document.body.appendChild(pre); });</script>"""


def test_report_page_in_a_real_browser(tmp_path):
    """Chromium loads the page, every picture resolves, the hostile sample id stays inert, a screenshot is written."""
    from motionflow.datasets.synthetic import synthetic_clip, synthetic_lidar_pair

    clip = synthetic_clip(num_frames=2, size=(96, 128), seed=1)
    gt, pred = clip.flow[0], clip.flow[0] + 0.5
    pair = synthetic_lidar_pair(seed=0)
    pictures = {"pics/flow.png": flow_picture(gt), "pics/odd name #1.png": epe_picture(pred, gt),
                "pics/kitti.png": kitti_error_picture(pred, gt),
                "pics/bev.png": scene_flow_picture(pair.pc1, pair.flow, ego_motion=pair.ego_motion, panel_inches=3)}
    for name, image in pictures.items():
        write_image(tmp_path / name, image)
    page = write_report_page(tmp_path / "REPORT.html", _report(), [(k, f"{EVIL} {k}") for k in pictures])
    check = tmp_path / "check.html"  # the same page plus a probe script, in the same folder
    check.write_text(page.read_text().replace("</body>", _CHECK + "</body>"))
    out = _browser(tmp_path, "--virtual-time-budget=5000", "--dump-dom", check.as_uri())
    found = re.search(r'<pre id="mf-check">(.*?)</pre>', out.stdout, re.S)
    assert found, out.stderr[-2000:]
    probe = json.loads(html.unescape(found.group(1)))
    assert probe["scripts"] == 1 and probe["title"] != "pwned" and probe["title"] != "1"  # only the probe ran
    assert sorted(src for src, _, _ in probe["images"]) == sorted(picture_src(k) for k in pictures)
    widths = {src: w for src, _, w in probe["images"]}
    assert widths[picture_src("pics/flow.png")] == 128 and all(w > 0 for w in widths.values())
    shot = tmp_path / "screenshot.png"
    out = _browser(tmp_path, "--window-size=1280,1600", f"--screenshot={shot}", page.as_uri())
    assert shot.exists(), out.stderr[-2000:]
    from motionflow.io import read_image

    image = read_image(shot).astype(int)
    assert image.shape[:2] == (1600, 1280)
    assert ((image.max(-1) - image.min(-1)) > 80).sum() > 5000  # the colour pictures are on screen


def test_write_page_is_plain_static_html(tmp_path):
    write_image(tmp_path / "p.png", np.zeros((4, 4, 3), np.uint8))
    path = write_page(tmp_path / "index.html", "demo", [Gallery("Pictures", [("p.png", "caption")])])
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "<script" not in text and 'src="p.png"' in text


def test_list_and_dict_cells_read_as_bullets_and_lines_and_wide_tables_scroll():
    page = render_page("t", [Fields("Protocol", {"notes": ["a<b", "c"], "options": {"root": "/d", "pass": "final"}}),
                             Table("wide", ["id"] + [f"m{i}" for i in range(30)], [["x"] + list(range(30))])])
    assert "<td><ul><li>a&lt;b</li><li>c</li></ul></td>" in page
    assert "<td>root: /d<br>pass: final</td>" in page and '["a' not in page
    assert page.count('<div class="scroll"><table>') == 2 and "overflow-x: auto" in page
