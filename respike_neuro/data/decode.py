"""Video decoding with PyAV: a reader for chosen frame indices, probing, and the per-clip memory budget.

Frame indices are positions in presentation order at the native frame rate (frame k is shown at
t = k / fps). Nothing here knows about datasets, labels or clip sampling (respike_neuro.data.video);
the frame cache (respike_neuro.data.frame_cache) and the datasets both decode through `VideoReader`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

SEEK_THRESHOLD = 48  # frames: seek (to the keyframe before) only when the clip starts this far in
# Memory budget of one clip's frames, decoded (uint8) or resized by the eval transform (float32): a
# 2x32768-pixel video resized to its short side needed 2 GB; such videos are refused (one line, and
# datasets skip them like corrupt files). A normal 16-frame 320x240 clip needs ~4 MB decoded.
CLIP_MEMORY_BUDGET = 512 << 20


class VideoDecodeError(RuntimeError):
    """A video file that cannot be opened or decoded."""


# Errors that mean "this file is bad", as opposed to a bug in the caller.
DECODE_ERRORS: tuple[type[BaseException], ...] = (av.FFmpegError, VideoDecodeError, OSError, EOFError)


def scaled_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """(w, h) with the short side brought down to `short_side` (aspect kept, never upscaled)."""
    if short_side is None or min(width, height) <= short_side:
        return width, height
    if width <= height:
        return short_side, max(1, round(height * short_side / width))
    return max(1, round(width * short_side / height)), short_side


class VideoReader:
    """One open video file: frame count, fps, and decoding of chosen frame indices.

    `threads` > 1 turns on FFmpeg's frame+slice threading inside the decoder (worth it for large
    frames; for small ones, parallel DataLoader workers are the cheaper way to use cores).
    """

    def __init__(self, path: str | os.PathLike, *, threads: int = 1) -> None:
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an int >= 1, got {threads!r}")
        self.path = Path(path)
        self.threads = threads
        self._num_frames: int | None = None
        self.seeked = False  # whether the last read() used a seek (for tests and benchmarks)
        self._open()

    def _open(self) -> None:
        try:
            self._container = av.open(str(self.path), metadata_errors="ignore")
        except av.FFmpegError as e:
            raise VideoDecodeError(f"{self.path}: cannot open ({e})") from None
        if not self._container.streams.video:
            self._container.close()
            raise VideoDecodeError(f"{self.path}: no video stream")
        self._stream = self._container.streams.video[0]
        if self.threads > 1:
            self._stream.thread_type = "AUTO"
            self._stream.thread_count = self.threads

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def fps(self) -> float:
        rate = self._stream.average_rate or self._stream.guessed_rate
        return float(rate) if rate else 0.0

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) as stored."""
        return self._stream.codec_context.width, self._stream.codec_context.height

    @property
    def num_frames(self) -> int:
        """Frame count from the header; files without one (mkv/webm) have their packets counted."""
        if self._num_frames is None:
            n = int(self._stream.frames or 0)
            if n <= 0:
                n = sum(1 for p in self._container.demux(self._stream) if p.size > 0)
                self.close()
                self._open()
            self._num_frames = n
        return self._num_frames

    def read(self, indices: Sequence[int] | np.ndarray, *, short_side: int | None = None
             ) -> tuple[np.ndarray, int]:
        """Decode frames `indices` (non-decreasing, repeats allowed) as uint8 (K, H, W, 3) RGB.

        Returns (frames, real): `real` counts the requested indices that exist; the ones past the
        true end of the stream (a header that overstates its length) hold the last frame.
        Starts far into the video seek to the keyframe before them and recover frame indices
        from timestamps, k = round((pts - start) * time_base * fps); a seek that lands past the
        target falls back to decoding from the start.
        """
        want = np.asarray(indices, dtype=np.int64)
        if want.ndim != 1 or want.size == 0:
            raise ValueError(f"indices must be a non-empty 1-d sequence, got shape {want.shape}")
        if want[0] < 0 or np.any(np.diff(want) < 0):
            raise ValueError("indices must be non-negative and non-decreasing")
        width, height = scaled_size(*self.size, short_side)
        check_clip_budget(
            self.path, len(want) * width * height * 3, f"{len(want)} decoded {width}x{height} frames"
        )
        self.seeked = False
        if want[0] >= SEEK_THRESHOLD and self.fps > 0 and self._stream.time_base:
            result = self._read_from(want, short_side, seek=True)
            if result is not None:
                self.seeked = True
                return result
            self.close()
            self._open()
        result = self._read_from(want, short_side, seek=False)
        assert result is not None
        return result

    def _read_from(self, want: np.ndarray, short_side: int | None, *, seek: bool
                   ) -> tuple[np.ndarray, int] | None:
        stream = self._stream
        start = stream.start_time or 0
        tb = float(stream.time_base) if stream.time_base else 0.0
        fps = self.fps
        if seek:
            target = start + int((want[0] - 0.5) / fps / tb)
            self._container.seek(max(target, start), stream=stream, backward=True, any_frame=False)
        out: np.ndarray | None = None
        j, count, last = 0, 0, None
        for frame in self._container.decode(stream):
            if seek:
                if frame.pts is None:
                    return None
                k = round((frame.pts - start) * tb * fps)
                if count == 0 and k > want[0]:
                    return None  # landed past the target: caller decodes from the start
            else:
                k = count
            count += 1
            last = frame
            if k < want[j]:
                continue
            arr = _to_rgb(frame, short_side, None if out is None else out.shape[1:3])
            if out is None:
                out = np.empty((len(want), *arr.shape), dtype=np.uint8)
            while j < len(want) and want[j] <= k:  # k > want[j] only across a timestamp gap
                out[j] = arr
                j += 1
            if j == len(want):
                return out, j
        if last is None:
            if seek:
                return None
            raise VideoDecodeError(f"{self.path}: no frame could be decoded")
        # the stream ended before the last requested index: hold its last frame
        arr = _to_rgb(last, short_side, None if out is None else out.shape[1:3])
        if out is None:
            out = np.empty((len(want), *arr.shape), dtype=np.uint8)
        out[j:] = arr
        return out, j

    def read_all(self, *, short_side: int | None = None) -> np.ndarray:
        """Every frame, uint8 (N, H, W, 3); raises VideoDecodeError when none decodes."""
        frames: list[np.ndarray] = []
        for f in self._container.decode(self._stream):
            frames.append(_to_rgb(f, short_side, frames[0].shape[:2] if frames else None))
        if not frames:
            raise VideoDecodeError(f"{self.path}: no frame could be decoded")
        return np.stack(frames)


def check_clip_budget(path: str | os.PathLike, nbytes: float, what: str) -> None:
    """VideoDecodeError (one line, a skipped video in datasets) when a clip would exceed the budget."""
    if nbytes > CLIP_MEMORY_BUDGET:
        raise VideoDecodeError(
            f"{path}: {what} would need {nbytes / 2**20:.0f} MiB, over the {CLIP_MEMORY_BUDGET >> 20} MiB "
            "per-clip budget (extreme size or aspect ratio)"
        )


def check_resize_budget(
    path: str | os.PathLike, width: int, height: int, frames: int, resolution: int
) -> None:
    """The eval transform resizes the short side to `resolution`, scaling the long side by the same
    factor (float32): refuse frames whose resized clip would exceed the budget."""
    long_side = round(max(width, height) * resolution / max(1, min(width, height)))
    check_clip_budget(
        path, 4.0 * frames * 3 * resolution * long_side,
        f"{frames} frames of {width}x{height} resized to {resolution}x{long_side}",
    )


def _to_rgb(frame: av.VideoFrame, short_side: int | None, hw: tuple[int, int] | None = None) -> np.ndarray:
    """RGB24 array of a frame, short side scaled down; `hw` forces the (H, W) of earlier frames, so
    a stream that changes resolution midway still stacks."""
    w, h = scaled_size(frame.width, frame.height, short_side) if hw is None else (hw[1], hw[0])
    if (w, h) == (frame.width, frame.height):
        return frame.to_ndarray(format="rgb24")
    return frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")


@dataclass(frozen=True)
class VideoInfo:
    """What `probe_video` learnt: frame count, native fps, stored (width, height)."""

    num_frames: int
    fps: float
    width: int
    height: int


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Open a video, count its frames and decode its first one; VideoDecodeError if it cannot."""
    try:
        with VideoReader(path) as reader:
            n = reader.num_frames
            reader.read([0])
            if n <= 0:
                raise VideoDecodeError(f"{path}: header reports no frames")
            return VideoInfo(n, reader.fps, *reader.size)
    except av.FFmpegError as e:
        raise VideoDecodeError(f"{path}: {e}") from None
