"""The CLI's picture flags: sceneflow --viz/--view/--rerun (and estimate's, see test_estimate_pictures)."""

import json

import numpy as np

from motionflow.cli.main import main
from motionflow.io import read_image


def test_sceneflow_viz_side_view_and_recording(tmp_path, capsys):
    from motionflow.datasets.synthetic import synthetic_lidar_pair

    pair = synthetic_lidar_pair(seed=0)
    np.save(tmp_path / "a.npy", pair.pc1)
    np.save(tmp_path / "b.npy", pair.pc2)
    bev, side, rrd = tmp_path / "bev.png", tmp_path / "side.png", tmp_path / "pair.rrd"
    args = ["sceneflow", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--out", str(tmp_path / "f.npz"),
            "--method", "rigid"]
    assert main(args + ["--viz", str(bev), "--rerun", str(rrd)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["viz"] == str(bev) and summary["rerun"] == str(rrd)
    assert main(args[:-1] + ["zero", "--viz", str(side), "--view", "side"]) == 0
    top, profile = read_image(bev), read_image(side)
    img = top.astype(int)
    crimson = (img[..., 0] > 180) & (img[..., 1] < 80) & (img[..., 2] < 100)
    assert crimson.sum() > 30  # the rigid method's moving clusters as arrows
    assert profile.shape != top.shape
    from rerun.chunk import RrdReader

    entities = {c.entity_path for c in RrdReader(rrd).stream()}
    assert {"/lidar/pc1", "/lidar/pc2", "/lidar/flow", "/lidar/clusters", "/lidar/cluster_motion"} <= entities


def test_estimate_pictures_preview_and_recording_share_one_normalisation(tmp_path, capsys):
    from motionflow.datasets.synthetic import synthetic_clip
    from motionflow.io import read_flow
    from motionflow.io.video import VideoWriter
    from motionflow.viz import flow_picture, flow_scale

    clip = synthetic_clip(num_frames=4, size=(64, 96), seed=3)
    video = tmp_path / "clip.mp4"
    with VideoWriter(video, fps=5) as writer:
        for frame in clip.frames:
            writer.write(frame.transpose(1, 2, 0))
    out, rrd = tmp_path / "out", tmp_path / "clip.rrd"
    assert main(["estimate", str(video), "--out", str(out), "--method", "opencv-dis", "--viz", "--preview",
                 "--rerun", str(rrd), "--no-progress"]) == 0
    report = json.loads((out / "estimate_report.json").read_text())
    flows = sorted(out.glob("frame_*.flo"))
    assert len(flows) == 3
    scale = flow_scale(read_flow(p) for p in flows)
    assert report["flow_scale_px"] == scale
    for p in flows:  # every PNG on the video's scale (a per-picture scale would differ for all but one)
        flow, valid = read_flow(p)
        assert np.array_equal(read_image(out / "viz" / f"{p.stem}.png"), flow_picture(flow, scale, valid))
    import av

    with av.open(str(out / "preview.mp4")) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert sum(1 for _ in container.decode(video=0)) == 3
    from rerun.chunk import RrdReader

    rows = {}
    for chunk in RrdReader(rrd).stream():
        rows[chunk.entity_path] = rows.get(chunk.entity_path, 0) + chunk.num_rows
    assert rows["/video/frame"] == 3 and rows["/video/flow"] == 3 and rows["/legend/color_wheel"] == 1
    # a fixed normalisation is used as given; a non-positive one is bad usage
    assert main(["estimate", str(video), "--out", str(tmp_path / "o2"), "--method", "opencv-dis", "--viz",
                 "--flow-scale", "3", "--no-progress"]) == 0
    assert json.loads((tmp_path / "o2" / "estimate_report.json").read_text())["flow_scale_px"] == 3.0
    try:  # bad usage: exit code 2 (returned in-process, or argparse's SystemExit)
        code = main(["estimate", str(video), "--out", str(tmp_path / "o3"), "--flow-scale", "0"])
    except SystemExit as exc:
        code = exc.code
    assert code == 2 and "--flow-scale: expected a positive number of pixels" in capsys.readouterr().err
