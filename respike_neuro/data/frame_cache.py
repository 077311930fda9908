"""Decode-once frame cache: every video stored as one uint8 .npy, memory-mapped on read.

Decoding compressed video costs far more than reading raw frames, so a dataset given a
`FrameCache` decodes each video once (at a reduced short side) and afterwards only slices
memory-mapped arrays. Disk cost per video is frames x H x W x 3 bytes: at short side 128 a 4:3
UCF-101 clip of 186 frames is 186 * 128 * 171 * 3 = 12 MB (about 160 GB for the whole dataset);
pick the short side from the training resolution (crops are taken from the cached frames).

Layout: `<dir>/<key>.npy` with key = sha1(absolute path, size, mtime, short side), so an edited or
replaced source video is decoded again. An undecodable video gets `<key>.bad` holding the reason,
so it is not retried. Entries are written to a temporary name and renamed, so concurrent
DataLoader workers decoding the same video never see a partial file.

The command line that fills a cache for a whole dataset is respike_neuro.data.cache.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from respike_neuro.data.decode import DECODE_ERRORS, VideoDecodeError, VideoReader


class FrameCache:
    """Directory of decoded videos; `frames(path)` returns a read-only (N, H, W, 3) uint8 memmap."""

    def __init__(self, directory: str | os.PathLike, *, short_side: int | None = 128,
                 threads: int = 1) -> None:
        if short_side is not None and (isinstance(short_side, bool) or not isinstance(short_side, int)
                                       or short_side < 1):
            raise ValueError(f"short_side must be None or an int >= 1, got {short_side!r}")
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise ValueError(f"cache directory {self.directory} exists and is not a directory")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.short_side = short_side
        self.threads = threads

    def __repr__(self) -> str:
        return f"FrameCache({str(self.directory)!r}, short_side={self.short_side})"

    def key(self, path: str | os.PathLike) -> str:
        """Entry name for a source video: changes when the file or the short side changes."""
        src = Path(path).resolve()
        st = src.stat()
        text = f"{src}|{st.st_size}|{st.st_mtime_ns}|{self.short_side}"
        return hashlib.sha1(text.encode("utf-8")).hexdigest()[:24]

    def entry(self, path: str | os.PathLike) -> Path:
        return self.directory / f"{self.key(path)}.npy"

    def contains(self, path: str | os.PathLike) -> bool:
        return self.entry(path).is_file()

    def frames(self, path: str | os.PathLike) -> np.ndarray:
        """All frames of `path`, decoded on first use; VideoDecodeError if the video cannot be."""
        entry = self.entry(path)
        if not entry.is_file():
            bad = entry.with_suffix(".bad")
            if bad.is_file():
                raise VideoDecodeError(f"{path}: {bad.read_text(encoding='utf-8').strip()} (cached verdict)")
            self._build(Path(path), entry)
        return np.load(entry, mmap_mode="r")

    def _build(self, path: Path, entry: Path) -> None:
        tmp = entry.with_name(f".{entry.stem}.{os.getpid()}.tmp.npy")
        try:
            with VideoReader(path, threads=self.threads) as reader:
                frames = reader.read_all(short_side=self.short_side)
        except DECODE_ERRORS as e:
            entry.with_suffix(".bad").write_text(f"{e}\n", encoding="utf-8")
            raise VideoDecodeError(f"{path}: {e}") from None
        try:
            np.save(tmp, frames)
            os.replace(tmp, entry)
        finally:
            tmp.unlink(missing_ok=True)

    def build(self, paths: Iterable[str | os.PathLike], *, progress: bool = True) -> dict[str, int]:
        """Decode every video not cached yet; counts of built, already cached and failed ones."""
        from tqdm import tqdm

        counts = {"built": 0, "cached": 0, "failed": 0}
        paths = list(paths)
        for p in tqdm(paths, desc="frame cache", disable=not progress, leave=False):
            if self.contains(p):
                counts["cached"] += 1
                continue
            try:
                self.frames(p)
                counts["built"] += 1
            except DECODE_ERRORS:
                counts["failed"] += 1
        return counts

    def nbytes(self) -> int:
        """Bytes on disk taken by cached frames."""
        return sum(p.stat().st_size for p in self.directory.glob("*.npy"))
