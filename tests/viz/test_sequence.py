"""One normalisation for every picture of a sequence: PNGs, preview and recording."""

import numpy as np

from motionflow.io import read_image, write_flow
from motionflow.viz.sequence import write_sequence_pictures


def test_one_normalisation_for_pngs_preview_and_recording(tmp_path):
    items = []
    for i, speed in enumerate((1.0, 2.0, 4.0)):  # uniform flows to the right, 1, 2 and 4 px
        flow = np.zeros((64, 80, 2), np.float32)
        flow[..., 0] = speed
        path = tmp_path / f"frame_{i:04d}.flo"
        write_flow(path, flow)
        items.append((i, path))
    frames = [(i, np.full((64, 80, 3), 50 * i, np.uint8)) for i in range(4)]
    got = write_sequence_pictures(items, viz_dir=tmp_path / "viz", preview=tmp_path / "preview.mp4", fps=5,
                                  rerun=tmp_path / "seq.rrd", frames=iter(frames))
    assert got.scale == 4.0 and got.pictures == 3
    colours = [read_image(tmp_path / "viz" / f"frame_{i:04d}.png")[50, 10].tolist() for i in range(3)]
    # one scale: 4 px saturates, 2 px is half way to white, 1 px a quarter (a per-picture scale: all red)
    assert colours == [[255, 191, 191], [255, 127, 127], [255, 0, 0]]
    import av

    with av.open(str(got.preview)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 3 and abs(int(decoded[0][50, 10, 1]) - 191) < 12
    from rerun.chunk import RrdReader

    rows = {}
    for chunk in RrdReader(tmp_path / "seq.rrd").stream():
        rows[chunk.entity_path] = rows.get(chunk.entity_path, 0) + chunk.num_rows
    assert rows["/video/flow"] == 3 and rows["/video/frame"] == 3 and rows["/video/max_flow_px"] == 3
    fixed = write_sequence_pictures(items, viz_dir=tmp_path / "viz8", max_flow=8.0)
    assert fixed.scale == 8.0 and read_image(tmp_path / "viz8" / "frame_0002.png")[50, 10].tolist() == [255, 127, 127]
