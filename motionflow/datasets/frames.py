"""Unlabelled clips streamed from a folder of frames (``frames``) or a video file (``video``).

For inference only: samples carry frames and no flow. Expected input::

    frames:  FOLDER/any_name_0001.png ...   (png/jpg/ppm/bmp, natural sort: 2 before 10)
    video:   FILE.mp4 (any container OpenCV opens)

Clips of ``frames`` frames tile the sequence like Sintel's (consecutive clips share their end frame,
the last one is end-aligned and its ``pair_index`` names only the pairs not covered before), so
every consecutive pair appears exactly once in some ``pair_index``. Iterating the dataset streams
each frame from disk once (a rolling buffer); indexing a video clip seeks by decoding from the start.
The sample id is the first scored frame's file stem (``frames``) or ``frame_XXXXXX`` (``video``).
The video's frame count comes from the container and can be an estimate; a shorter stream ends the
iteration early.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Iterator, Optional

from ..errors import DatasetNotFoundError, FormatError, ShapeError
from ..types import FlowSample
from .base import Dataset, stack_frames, tile_windows


class FrameClips(Dataset):
    """Clips from a folder of images or a video.

    Args:
        root: the folder of frames (``frames``) or the video file (``video``).
        split: ignored (accepted for a uniform :func:`get_dataset` call).
        frames: clip length T >= 2.
        max_samples: keep the first N clips.
    """

    name = "frames"
    kind = "optical"

    def __init__(self, root, split=None, frames: int = 2, max_samples: Optional[int] = None):
        if int(frames) < 2:
            raise ShapeError(f"{self.name} frames: expected T >= 2, found {frames}")
        self.frames = int(frames)
        super().__init__(root, split, max_samples)

    def _source(self):
        from ..io.video import FrameSource

        path = Path(self.root)
        if self.name == "frames":
            if not path.is_dir():
                raise DatasetNotFoundError(f"frames: expected a folder of images, found {'a file' if path.exists() else 'nothing'} at {path}")
        elif not path.is_file():
            raise DatasetNotFoundError(f"video: expected a video file, found {'a folder' if path.exists() else 'nothing'} at {path}")
        try:
            return FrameSource(path)
        except FormatError as exc:
            raise DatasetNotFoundError(str(exc)) from exc

    def _index(self) -> list[dict]:
        self._src = self._source()
        n = len(self._src)
        if n < 2:
            raise DatasetNotFoundError(f"{self.name} {self.root}: expected at least 2 frames, found {n}")
        records = []
        for start, pairs in tile_windows(list(range(n)), self.frames):
            length = min(self.frames, n - start)
            records.append({"id": self._src.name(start + pairs[0]), "start": start, "length": length, "pairs": pairs})
        return records

    def _sample(self, rec: dict, images: list) -> FlowSample:
        idx = list(range(rec["start"], rec["start"] + rec["length"]))
        names = [self._src.name(i) for i in idx]
        frames = stack_frames(images, names if self._src.files is None else [self._src.files[i] for i in idx])
        meta = {"dataset": self.name, "source": str(self.root), "frame_indices": idx, "frame_names": names}
        if self._src.fps:
            meta["fps"] = self._src.fps
        return FlowSample(rec["id"], frames, pair_index=tuple(rec["pairs"]), meta=meta)

    def _load(self, rec: dict) -> FlowSample:
        from ..io.video import iter_frames

        images = []
        if self._src.files is not None:
            source, offset = self._src.files[rec["start"] : rec["start"] + rec["length"]], 0
        else:
            source, offset = self.root, rec["start"]
        for _, img in iter_frames(source, start=offset):
            images.append(img)
            if len(images) == rec["length"]:
                break
        if len(images) < rec["length"]:
            raise FormatError(
                f"{self.root}: expected frames {rec['start']}..{rec['start'] + rec['length'] - 1}, "
                f"the stream ended after {rec['start'] + len(images)} frames"
            )
        return self._sample(rec, images)

    def __iter__(self) -> Iterator[FlowSample]:
        """Stream the clips in order, decoding every frame once."""
        from ..io.video import iter_frames

        if not self._records:
            return
        buffer: deque = deque()
        stream = iter_frames(self._src.files if self._src.files is not None else self.root)
        for k, rec in enumerate(self._records):
            end = rec["start"] + rec["length"]
            while not buffer or buffer[-1][0] < end - 1:
                try:
                    buffer.append(next(stream))
                except StopIteration:
                    return
            images = [img for i, img in buffer if rec["start"] <= i < end]
            yield self._sample(rec, images)
            keep_from = self._records[k + 1]["start"] if k + 1 < len(self._records) else end
            while buffer and buffer[0][0] < keep_from:
                buffer.popleft()


class VideoClips(FrameClips):
    __doc__ = FrameClips.__doc__
    name = "video"
