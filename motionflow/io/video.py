"""Frame sources (a video file, a folder of frames, a list of image files) and an mp4 writer (H.264).

Frames are streamed one at a time as ``(H, W, 3)`` uint8 RGB: a video is never held in memory.

Unreadable frames
-----------------
A frame that cannot be decoded (a corrupt image file, a damaged packet inside a video) is reported by
its index. :func:`iter_frames` raises a :class:`~motionflow.errors.FormatError` naming the index (and
the file) by default; with ``errors="yield"`` it yields ``(index, None)`` instead and goes on with the
next frame, which is what the inference engine uses to report bad frames and keep the flows of the
good ones. A frame whose size differs from the first frame counts as unreadable too.

OpenCV (``opencv-python-headless``) and PyAV (``av``, the writer's H.264 encoder) are imported lazily.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import numpy as np

from ..errors import FormatError, ShapeError, require_cv2

__all__ = [
    "FRAME_SUFFIXES",
    "VIDEO_SUFFIXES",
    "list_frame_files",
    "FrameSource",
    "iter_frames",
    "VideoWriter",
    "VIDEO_BACKENDS",
]

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")

_NUM = re.compile(r"(\d+)")

# A damaged video is reported frame by frame (FrameSource.problems), not by thousands of FFmpeg decoder
# lines on stderr: OpenCV reads OPENCV_FFMPEG_LOGLEVEL (-8 = AV_LOG_QUIET) once, when it first opens a
# video, so it is set when this module is imported. A value the user set is kept.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


def _natural_key(path: Path) -> tuple:
    """Sort key that orders ``frame_2`` before ``frame_10`` (digit runs compare as numbers)."""
    parts = _NUM.split(path.name)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in parts)


def list_frame_files(folder) -> list[Path]:
    """Image files of ``folder`` (suffixes png, jpg, jpeg, ppm, bmp; any case), naturally sorted.

    Raises:
        FormatError: ``folder`` is not a directory, or holds no image file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        found = "a file" if folder.exists() else "nothing"
        raise FormatError(f"{folder}: expected a folder of frames, found {found}")
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES]
    if not files:
        raise FormatError(
            f"{folder}: expected image files ({', '.join(FRAME_SUFFIXES)}), found none"
        )
    return sorted(files, key=_natural_key)


def _decode_image(path: Path) -> Optional[np.ndarray]:
    cv2 = require_cv2()
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        return None
    return np.ascontiguousarray(bgr[:, :, ::-1])


class FrameSource:
    """A sequence of frames read lazily from a video file, a folder of frames or image files.

    Args:
        source: path to a video file (``.mp4``, ``.avi`` ...), a folder of frames, or a list of image
            file paths (in order). A single image path is a one-frame list.

    Attributes:
        kind: ``"video"`` or ``"images"``.
        files: the image files (``images`` only), else None.
        fps: frames per second of a video (None for images).
        problems: ``{index: why}`` for every unreadable frame met so far, ``why`` naming the file (or
            the frame of a video) and the reason, e.g. ``"b.png: size 48x32 differs from the first
            frame's 96x64 (a.png)"``.
    """

    def __init__(self, source: Union[str, Path, Sequence[Union[str, Path]]]):
        self.files: Optional[list[Path]] = None
        self.fps: Optional[float] = None
        self.problems: dict[int, str] = {}
        if isinstance(source, (list, tuple)):
            if not source:
                raise FormatError("source: expected at least one image file, found an empty list")
            files = [Path(p) for p in source]
            for p in files:
                if not p.is_file():
                    raise FormatError(f"{p}: expected an existing image file, found nothing")
            self.kind, self.files, self.path = "images", files, None
        else:
            path = Path(source)
            if path.is_dir():
                self.kind, self.files, self.path = "images", list_frame_files(path), path
            elif path.is_file():
                if path.suffix.lower() in FRAME_SUFFIXES:
                    self.kind, self.files, self.path = "images", [path], None
                else:
                    self.kind, self.path = "video", path
                    self._probe_video()
            else:
                raise FormatError(f"{path}: expected a video file, a folder of frames or an image, found nothing")

    def _probe_video(self) -> None:
        cv2 = require_cv2()
        cap = cv2.VideoCapture(str(self.path))
        try:
            if not cap.isOpened():
                raise FormatError(
                    f"{self.path}: expected a video OpenCV can open ({', '.join(VIDEO_SUFFIXES)}), "
                    "found unreadable content"
                )
            fps = cap.get(cv2.CAP_PROP_FPS)
            self.fps = float(fps) if fps and fps > 0 else None
            self._count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        finally:
            cap.release()

    def __len__(self) -> int:
        """Number of frames (for a video: the container's frame count, which may be an estimate)."""
        return len(self.files) if self.files is not None else self._count

    def name(self, index: int) -> str:
        """Name used for outputs derived from frame ``index``: the image file's stem, or
        ``frame_{index:06d}`` for a video."""
        if self.files is not None:
            return self.files[index].stem
        return f"frame_{index:06d}"

    def __iter__(self):
        return self.iter()

    def iter(self, start: int = 0, errors: str = "raise") -> Iterator[tuple[int, Optional[np.ndarray]]]:
        """Yield ``(index, frame)`` with ``frame`` ``(H, W, 3)`` uint8 RGB, from frame ``start`` on.

        Args:
            start: index of the first frame to yield (earlier video frames are skipped without
                being decoded into RGB).
            errors: ``"raise"``: an unreadable frame raises :class:`FormatError` naming its index;
                ``"yield"``: it is yielded as ``(index, None)`` and reading continues.
        """
        if errors not in ("raise", "yield"):
            raise ShapeError(f"errors: expected 'raise' or 'yield', found {errors!r}")
        if start < 0:
            raise ShapeError(f"start: expected a non-negative frame index, found {start}")
        size = first = None
        gen = self._iter_images(start) if self.files is not None else self._iter_video(start)
        for index, frame, why in gen:
            if frame is not None:
                if size is None:
                    size, first = frame.shape, index
                elif frame.shape != size:
                    why = (f"size {frame.shape[1]}x{frame.shape[0]} differs from the first frame's "
                           f"{size[1]}x{size[0]} ({self._label(first)})")
                    frame = None
            if frame is None:
                self.problems[index] = f"{self._label(index)}: {why}"
                if errors == "raise":
                    raise FormatError(f"{self._where(index)}: frame {index} is unreadable ({why})")
                yield index, None
            else:
                yield index, frame

    def _label(self, index: int) -> str:
        """Frame ``index`` in messages: its file name, or ``frame N`` of a video."""
        if self.files is not None and index < len(self.files):
            return self.files[index].name
        return f"frame {index}"

    def _where(self, index: int) -> str:
        if self.files is not None and index < len(self.files):
            return str(self.files[index])
        return str(self.path)

    def _iter_images(self, start: int):
        for index in range(start, len(self.files)):
            frame = _decode_image(self.files[index])
            yield index, frame, "OpenCV cannot decode the image" if frame is None else ""

    def _iter_video(self, start: int):
        cv2 = require_cv2()
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise FormatError(f"{self.path}: expected a video OpenCV can open, found unreadable content")
        try:
            index = 0
            misses = 0
            while index < start:
                if not cap.grab():
                    return
                index += 1
            while True:
                ok, bgr = cap.read()
                if ok and bgr is not None:
                    misses = 0
                    yield index, np.ascontiguousarray(bgr[:, :, ::-1]), ""
                else:
                    # A failed read before the announced end is a damaged frame: report it and try
                    # the next one; several failures in a row (or past the end) end the stream.
                    if index >= self._count or misses >= 8:
                        return
                    misses += 1
                    yield index, None, "the video decoder returned no image"
                index += 1
        finally:
            cap.release()


def iter_frames(
    source, start: int = 0, errors: str = "raise"
) -> Iterator[tuple[int, Optional[np.ndarray]]]:
    """Stream ``(index, frame)`` pairs (``(H, W, 3)`` uint8 RGB) from a video file, a folder of
    frames or a list of image files; see :meth:`FrameSource.iter` for ``start`` and ``errors``."""
    return FrameSource(source).iter(start=start, errors=errors)


# --------------------------------------------------------------------------------------- writing
VIDEO_BACKENDS = ("auto", "pyav", "opencv")


def _pyav_reason() -> Optional[str]:
    """None when PyAV with the libx264 encoder is importable, else why not (one phrase)."""
    try:
        import av
    except ImportError:
        return "PyAV is not installed"
    if "libx264" not in av.codecs_available:
        return f"PyAV {av.__version__} has no libx264 encoder"
    return None


class _PyAVEncoder:
    """H.264 (libx264), pixel format yuv420p, in an mp4 with the index up front (``+faststart``)."""

    codec = "h264"

    def __init__(self, path: Path, fps: float, width: int, height: int, crf: int):
        from fractions import Fraction

        import av

        self._container = av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"})
        self._stream = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": str(int(crf)), "preset": "medium"}
        self._av = av

    def write(self, rgb: np.ndarray) -> None:
        frame = self._av.VideoFrame.from_ndarray(rgb, format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        for packet in self._stream.encode():  # flush the encoder's delayed frames
            self._container.mux(packet)
        self._container.close()


class _OpenCVEncoder:
    """OpenCV's ``cv2.VideoWriter`` with a FourCC (``mp4v``: MPEG-4 part 2, which browsers do not play)."""

    def __init__(self, path: Path, fps: float, width: int, height: int, fourcc: str):
        cv2 = require_cv2()
        self.codec = fourcc
        self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
        if not self._writer.isOpened():
            raise FormatError(f"{path}: OpenCV could not open a {fourcc} video writer")

    def write(self, rgb: np.ndarray) -> None:
        self._writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))

    def close(self) -> None:
        self._writer.release()


class VideoWriter:
    """Write RGB ``(H, W, 3)`` uint8 frames to an mp4 that plays everywhere, as a context manager.

    The default backend is PyAV (the ``video`` extra: ``pip install 'motionflow[video]'``; its wheels bundle
    libx264): H.264, pixel format yuv420p, constant quality ``crf``, the ``moov`` index at the start of
    the file, which is what browsers, players and slide decks accept. yuv420p stores colour at half
    resolution, so an odd width or height is padded by one row / column that repeats the last one.
    Without PyAV (or with ``backend="opencv"``) OpenCV writes ``fourcc`` (``mp4v``, MPEG-4 part 2: plays in
    VLC / ffmpeg but not in browsers); ``backend="auto"`` then prints a one-line notice on stderr.

    Args:
        path: output file (``.mp4``); parent folders are created.
        fps: frames per second.
        size: ``(width, height)`` every frame must have; taken from the first frame when None.
        fourcc: the OpenCV backend's codec.
        backend: ``"auto"`` (PyAV when it has libx264, else OpenCV), ``"pyav"`` or ``"opencv"``.
        crf: H.264 constant rate factor (0 lossless ... 51; 18 is visually lossless).

    Attributes:
        codec: ``"h264"`` or the FourCC actually written (set when the first frame opens the file).
        frames_written: frames appended so far.

    Every frame must have the writer's size. ``write`` after ``close`` raises.
    """

    def __init__(self, path, fps: float = 10.0, size: Optional[tuple[int, int]] = None, fourcc: str = "mp4v",
                 backend: str = "auto", crf: int = 18):
        if not fps or fps <= 0:
            raise ShapeError(f"fps: expected a positive frame rate, found {fps}")
        if backend not in VIDEO_BACKENDS:
            raise ShapeError(f"backend: expected one of {', '.join(VIDEO_BACKENDS)}, found {backend!r}")
        if not 0 <= int(crf) <= 51:
            raise ShapeError(f"crf: expected an H.264 quality in [0, 51], found {crf}")
        self.path = Path(path)
        self.fps = float(fps)
        self.size = tuple(size) if size is not None else None
        self.fourcc = fourcc
        self.backend = backend
        self.crf = int(crf)
        self.codec: Optional[str] = None
        self.frames_written = 0
        self._encoder = None
        self._closed = False

    def _open(self, width: int, height: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        reason = None if self.backend == "opencv" else _pyav_reason()
        if self.backend == "pyav" and reason is not None:
            from ..errors import MissingDependencyError

            raise MissingDependencyError(
                f"VideoWriter {self.path}: backend 'pyav' needs PyAV with libx264 ({reason}); "
                "install it with: pip install 'motionflow[video]'"
            )
        if self.backend == "opencv" or reason is not None:
            if self.backend == "auto":
                print(f"motionflow: notice: {reason}, so {self.path} is written as {self.fourcc} with OpenCV "
                      "(browsers do not play it); pip install 'motionflow[video]' for H.264", file=sys.stderr)
            self._encoder = _OpenCVEncoder(self.path, self.fps, width, height, self.fourcc)
        else:
            self._encoder = _PyAVEncoder(self.path, self.fps, width + width % 2, height + height % 2, self.crf)
        self.codec = self._encoder.codec
        self.size = (width, height)

    def write(self, frame) -> None:
        """Append one ``(H, W, 3)`` uint8 RGB frame."""
        if self._closed:
            raise FormatError(f"{self.path}: the video writer is closed")
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ShapeError(
                f"VideoWriter {self.path}: expected an (H, W, 3) uint8 RGB frame, found {frame.shape} {frame.dtype}"
            )
        h, w = frame.shape[:2]
        if self._encoder is None:
            if self.size is not None and self.size != (w, h):
                raise ShapeError(f"VideoWriter {self.path}: expected frame size {self.size} (W, H), found {(w, h)}")
            self._open(w, h)
        elif self.size != (w, h):
            raise ShapeError(f"VideoWriter {self.path}: expected frame size {self.size} (W, H), found {(w, h)}")
        if isinstance(self._encoder, _PyAVEncoder) and (h % 2 or w % 2):
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        self._encoder.write(np.ascontiguousarray(frame))
        self.frames_written += 1

    def close(self) -> None:
        if self._encoder is not None:
            encoder, self._encoder = self._encoder, None
            encoder.close()
        self._closed = True

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
