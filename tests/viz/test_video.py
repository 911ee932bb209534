"""mp4 previews that play everywhere: H.264 yuv420p through PyAV, OpenCV mp4v as the announced fallback."""

import numpy as np
import pytest

from motionflow.errors import MissingDependencyError, ShapeError
from motionflow.io import video as video_io
from motionflow.io.video import VideoWriter


def _frames(n, h, w):
    ramp = np.linspace(0, 255, w, dtype=np.float64)[None, :, None]
    return [np.clip(ramp + 20 * i, 0, 255).astype(np.uint8).repeat(h, 0).repeat(3, 2) for i in range(n)]


def _decode(path):
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        codec, pix_fmt = stream.codec_context.name, stream.codec_context.pix_fmt
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return codec, pix_fmt, frames


def test_default_writer_is_h264_yuv420p(tmp_path):
    path = tmp_path / "preview.mp4"
    frames = _frames(7, 33, 47)  # odd sizes: yuv420p needs even ones
    with VideoWriter(path, fps=12) as writer:
        for f in frames:
            writer.write(f)
    assert writer.codec == "h264" and writer.frames_written == 7
    codec, pix_fmt, decoded = _decode(path)
    assert (codec, pix_fmt, len(decoded)) == ("h264", "yuv420p", 7)
    assert decoded[0].shape == (34, 48, 3)  # padded by one repeated row and column
    for got, want in zip(decoded, frames):
        assert np.abs(got[:33, :47].astype(int) - want).mean() < 3  # crf 18: near lossless
    head = path.read_bytes()[:64]
    assert b"ftyp" in head and b"moov" in path.read_bytes()[:4096]  # index up front (+faststart)


def test_fallback_is_opencv_mp4v_with_a_one_line_notice(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(video_io, "_pyav_reason", lambda: "PyAV is not installed")
    path = tmp_path / "fallback.mp4"
    with VideoWriter(path, fps=10) as writer:
        for f in _frames(5, 32, 48):
            writer.write(f)
    err = capsys.readouterr().err
    assert writer.codec == "mp4v" and err.count("\n") == 1
    assert "notice: PyAV is not installed" in err and "motionflow[video]" in err
    codec, _, decoded = _decode(path)
    assert codec == "mpeg4" and len(decoded) == 5
    # asked for PyAV explicitly: no silent fallback
    with pytest.raises(MissingDependencyError, match=r"motionflow\[video\]"):
        VideoWriter(tmp_path / "x.mp4", backend="pyav").write(_frames(1, 8, 8)[0])
    assert not (tmp_path / "x.mp4").exists()


def test_explicit_opencv_backend_and_bad_arguments(tmp_path, capsys):
    with VideoWriter(tmp_path / "cv.mp4", backend="opencv") as writer:
        writer.write(_frames(1, 16, 16)[0])
    assert writer.codec == "mp4v" and capsys.readouterr().err == ""  # asked for: no notice
    with pytest.raises(ShapeError, match="backend"):
        VideoWriter(tmp_path / "y.mp4", backend="ffmpeg")
    with pytest.raises(ShapeError, match="crf"):
        VideoWriter(tmp_path / "y.mp4", crf=60)
