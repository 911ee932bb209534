"""Inference engine: clip windows and stitching for any method, input normalisation, streaming,
frame sources (video, folders, corrupt frames) and the mp4 writer."""

import numpy as np
import pytest
import torch

from motionflow.errors import FormatError, ShapeError
from motionflow.inference import as_frames, estimate_flow, iter_clips, stream_flow
from motionflow.io.video import FrameSource, VideoWriter, iter_frames, list_frame_files
from motionflow.types import FlowPrediction


class RecordingMethod:
    """A method whose flow for pair (t, t+1) is the constant (frame t+1 mean - frame t mean, frame t
    mean): every stitched pair can be checked, and the clips it was called on are recorded."""

    name = "recording"

    def __init__(self, clip_length):
        self.clip_length = clip_length
        self.calls = []

    def __call__(self, frames):
        self.calls.append(frames.shape[1])
        means = frames.mean(dim=(2, 3, 4))  # (B, T)
        b, t = means.shape
        h, w = frames.shape[-2:]
        u = (means[:, 1:] - means[:, :-1]).view(b, t - 1, 1, 1, 1).expand(b, t - 1, 1, h, w)
        v = means[:, :-1].view(b, t - 1, 1, 1, 1).expand(b, t - 1, 1, h, w)
        return FlowPrediction(flow=torch.cat([u, v], 2), backward=-torch.cat([u, v], 2))


def _frames(t, h=6, w=7):
    # frame i is constant i*i so every pair's flow differs
    return np.stack([np.full((3, h, w), i * i, np.uint8) for i in range(t)])


def test_iter_clips_cover_every_pair_once():
    for t in range(2, 20):
        for length in (2, 3, 4, 5, 8):
            clips = iter_clips(t, length)
            pairs = [p for a, b in clips for p in range(a, b - 1)]
            assert pairs == list(range(t - 1))
            assert all(b - a <= length for a, b in clips)
            assert all(clips[k + 1][0] == clips[k][1] - 1 for k in range(len(clips) - 1))
    assert iter_clips(9, 4) == [(0, 4), (3, 7), (6, 9)]
    with pytest.raises(ShapeError, match="clip_length"):
        iter_clips(5, 1)


@pytest.mark.parametrize("clip_length", [2, 3, 5])
def test_estimate_flow_stitches_clips_for_any_method(clip_length):
    m = RecordingMethod(clip_length)
    frames = _frames(9)
    pred = estimate_flow(frames, method=m)
    assert pred.flow.shape == (8, 2, 6, 7)
    expected_u = [(i + 1) ** 2 - i * i for i in range(8)]
    expected_v = [i * i for i in range(8)]
    assert pred.flow[:, 0, 0, 0].tolist() == expected_u
    assert pred.flow[:, 1, 0, 0].tolist() == expected_v
    torch.testing.assert_close(pred.backward, -pred.flow)
    assert sum(c - 1 for c in m.calls) == 8 and max(m.calls) <= clip_length


def test_input_forms_are_equivalent():
    m = RecordingMethod(3)
    arr = _frames(4)
    ref = estimate_flow(arr, method=m).flow
    hw3 = [f.transpose(1, 2, 0) for f in arr]
    torch.testing.assert_close(estimate_flow(hw3, method=m).flow, ref)
    torch.testing.assert_close(estimate_flow(torch.from_numpy(arr).float(), method=m).flow, ref)
    batched = estimate_flow(np.stack([arr, arr]), method=m).flow
    assert batched.shape == (2, 3, 2, 6, 7)
    torch.testing.assert_close(batched[1], ref)


def test_input_errors():
    with pytest.raises(ShapeError, match="T >= 2"):
        as_frames(np.zeros((1, 3, 4, 4), np.uint8))
    with pytest.raises(ShapeError, match=r"frames\[1\]: expected the size"):
        as_frames([np.zeros((4, 4, 3)), np.zeros((5, 4, 3))])
    with pytest.raises(ShapeError, match=r"\(T, 3, H, W\)"):
        as_frames(np.zeros((2, 4, 4, 3)))
    from motionflow.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="no-such-method"):
        estimate_flow(_frames(2), method="no-such-method")


def test_estimate_flow_classical_on_a_synthetic_clip():
    from motionflow.datasets.synthetic import synthetic_clip

    s = synthetic_clip(num_frames=3, size=(64, 96), seed=2)
    pred = estimate_flow(s.frames, preset="fast")
    epe = np.linalg.norm(pred.flow.numpy() - s.flow, axis=1)[~s.occluded].mean()
    assert pred.flow.shape == (2, 2, 64, 96)
    assert epe < 0.6


def test_stream_flow_breaks_the_chain_at_an_unreadable_frame_and_rescales():
    m = RecordingMethod(3)
    frames = [(i, np.full((8, 12, 3), i * 10, np.uint8)) for i in range(7)]
    frames[3] = (3, None)
    bad = []
    out = list(stream_flow(iter(frames), m, max_size=6, on_bad_frame=bad.append))
    assert [i for i, _, _ in out] == [0, 1, 4, 5]
    assert bad == [3]
    for i, frame, flow in out:
        assert flow.shape == (8, 12, 2) and frame.shape == (8, 12, 3)
        # u = mean difference (10 grey levels) at half size, scaled back x2 along x
        np.testing.assert_allclose(flow[..., 0], 20.0, atol=1e-4)
        np.testing.assert_allclose(flow[..., 1], 2.0 * i * 10, atol=1e-3)  # v scaled x2 along y


def test_frame_sources_video_folder_and_corrupt_frame(tmp_path):
    frames = [np.full((32, 48, 3), 20 * i, np.uint8) for i in range(5)]
    with VideoWriter(tmp_path / "v.mp4", fps=7) as w:
        for f in frames:
            w.write(f)
    src = FrameSource(tmp_path / "v.mp4")
    assert len(src) == 5 and src.fps == pytest.approx(7)
    got = list(src.iter())
    assert [i for i, _ in got] == list(range(5))
    assert all(abs(float(g.mean()) - float(f.mean())) < 4 for (_, g), f in zip(got, frames))
    assert [i for i, _ in iter_frames(tmp_path / "v.mp4", start=3)] == [3, 4]
    assert src.name(2) == "frame_000002"

    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (1, 2, 10, 11):
        cv2.imwrite(str(folder / f"img_{i}.png"), frames[0])
    (folder / "img_3.png").write_bytes(b"not a png")
    (folder / "notes.txt").write_text("ignored")
    assert [p.name for p in list_frame_files(folder)] == ["img_1.png", "img_2.png", "img_3.png", "img_10.png", "img_11.png"]
    yielded = list(iter_frames(folder, errors="yield"))
    assert [(i, f is None) for i, f in yielded] == [(0, False), (1, False), (2, True), (3, False), (4, False)]
    with pytest.raises(FormatError, match=r"img_3.png: frame 2 is unreadable"):
        list(iter_frames(folder))
    with pytest.raises(FormatError, match="expected a folder of frames|expected a video file"):
        FrameSource(tmp_path / "missing")
    with pytest.raises(ShapeError, match="expected frame size"):
        with VideoWriter(tmp_path / "x.mp4") as w:
            w.write(frames[0])
            w.write(np.zeros((16, 16, 3), np.uint8))


class WarmStarted(RecordingMethod):
    """Records the ``prev_flow`` warm start the engine hands over between clips."""

    accepts_prev_flow = True

    def __init__(self, clip_length):
        super().__init__(clip_length)
        self.prevs = []

    def __call__(self, frames, prev_flow=None):
        self.prevs.append(None if prev_flow is None else prev_flow.clone())
        return super().__call__(frames)


def test_engine_passes_the_previous_clips_last_flow_as_warm_start():
    m = WarmStarted(3)
    pred = estimate_flow(_frames(7), method=m)  # clips (0,3) (2,5) (4,7)
    assert m.prevs[0] is None
    torch.testing.assert_close(m.prevs[1][0], pred.flow[1])
    torch.testing.assert_close(m.prevs[2][0], pred.flow[3])
    # streaming: the same hand-over, and none after an unreadable frame
    s = WarmStarted(3)
    frames = [(i, np.full((4, 4, 3), i, np.uint8)) for i in range(8)]
    frames[5] = (5, None)
    list(stream_flow(iter(frames), s))  # clips [0,1,2] [2,3,4] | break | [6,7]
    assert s.prevs[0] is None and s.prevs[1] is not None and s.prevs[2] is None
    assert s.prevs[1][0, 0, 0, 0].item() == 1.0  # u of pair (1, 2): mean 2 - mean 1


def test_estimate_flow_default_classical_across_clips():
    """More frames than one clip (8): the second clip is warm-started from the first's last flow."""
    from motionflow.datasets.synthetic import synthetic_clip

    s = synthetic_clip(num_frames=10, size=(48, 64), seed=3)
    pred = estimate_flow(s.frames)
    assert pred.meta["clips"] == [(0, 8), (7, 10)]
    assert pred.flow.shape == (9, 2, 48, 64)
    epe = np.linalg.norm(pred.flow.numpy() - s.flow, axis=1)[~s.occluded].mean()
    assert epe < 0.6
