"""Video datasets: transforms, skip bookkeeping and the dataset over respike_neuro.data.decode.

Which frames make a clip (train/eval sampling, short videos) is in sampling.py.

Corrupt videos (no video stream, unreadable header, nothing decodable) are skipped with a
`VideoDataWarning` naming the file and counted (`videos_skipped`). In train mode the item is
replaced deterministically by the next video that decodes, so an epoch never dies on one bad file;
in eval mode the item becomes a blank clip with the video's own label, so `video_index` stays
exact. Counters live in a `SkipLog`, an append-only text file that every DataLoader worker (fork or
spawn) and DDP rank writes to, so the main process sees what the workers found. `scan()` validates
every video once up front (before DataLoaders start) and drops the corrupt ones from the index:
eval-mode datasets scan at construction by default.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from respike_neuro.data.clips import IMAGENET_MEAN, normalize_clip
from respike_neuro.data.decode import (  # noqa: F401  (decode names re-exported: tests, hybrid_demo)
    CLIP_MEMORY_BUDGET,
    DECODE_ERRORS,
    SEEK_THRESHOLD,
    VideoDecodeError,
    VideoInfo,
    VideoReader,
    check_clip_budget,
    check_resize_budget,
    probe_video,
    scaled_size,
)
from respike_neuro.data.sampling import (  # noqa: F401  (sampling names re-exported: tests, hybrid_demo)
    SAMPLINGS,
    clip_span,
    eval_indices,
    frames_needed,
    train_indices,
)

if TYPE_CHECKING:
    from respike_neuro.data.frame_cache import FrameCache

MODES = ("train", "eval")
MODE_ALIASES = {"train": "train", "eval": "eval", "val": "eval", "test": "eval"}


class VideoDataWarning(UserWarning):
    """A video was skipped, missing or shorter than a clip (filter with warnings.simplefilter)."""


# -- transforms ----------------------------------------------------------------------------------


class ClipTransform:
    """uint8 (T, H, W, 3) frames -> float32 (T, 3, R, R) clip, one set of parameters per clip.

    The authors' protocol: train RandomResizedCrop(R) + horizontal flip, eval resize short side
    to R + centre crop R; torchvision.transforms.v2 draws the crop/flip once for a Video tensor,
    so all frames get the same geometry and a static scene stays static (residuals exactly 0).
    Then x / 255 and per-channel ImageNet normalisation, identical for every frame.
    """

    def __init__(self, resolution: int, mode: str = "train", *, scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True, raw: bool = False) -> None:
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
            raise ValueError(f"resolution must be an int >= 1, got {resolution!r}")
        mode = _check_mode(mode)
        if mode == "train":
            ops: list = [v2.RandomResizedCrop(resolution, scale=scale, ratio=ratio, antialias=True)]
            if flip:
                ops.append(v2.RandomHorizontalFlip())
        else:
            ops = [v2.Resize(resolution, antialias=True), v2.CenterCrop(resolution)]
        self.resolution, self.mode, self.raw = resolution, mode, raw
        self._geometry = v2.Compose(ops)

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        if not (isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.ndim == 4
                and frames.shape[-1] == 3):
            shape = getattr(frames, "shape", None)
            raise ValueError(f"frames must be a uint8 array (T, H, W, 3), got {type(frames).__name__} "
                             f"{shape}")
        if self.mode == "eval":
            check_resize_budget("clip", frames.shape[2], frames.shape[1], frames.shape[0], self.resolution)
        video = tv_tensors.Video(torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2))
        out = self._geometry(video).as_subclass(torch.Tensor)
        clip = out.to(torch.float32).div_(255.0).contiguous()
        return clip if self.raw else normalize_clip(clip)


def _check_mode(mode: str) -> str:
    if mode not in MODE_ALIASES:
        raise ValueError(f"mode must be one of {sorted(MODE_ALIASES)}, got {mode!r}")
    return MODE_ALIASES[mode]


# -- problem log shared by processes -------------------------------------------------------------


class SkipLog:
    """Append-only record of problem videos, shared by every process holding a copy.

    Lines are "kind<TAB>path<TAB>reason". A DataLoader worker is a copy of the dataset (fork or
    pickle), so in-memory counters there never reach the main process; a file does. O_APPEND
    writes of one short line are atomic on POSIX, so concurrent workers do not interleave.
    Without `path`, a temporary file is created and removed when the creating process drops it;
    a named file may be shared (e.g. by DDP ranks or several splits): datasets count only their
    own videos in it.
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        if path is None:
            fd, name = tempfile.mkstemp(prefix="respike-skiplog-", suffix=".tsv")
            os.close(fd)
            self.path = Path(name)
            self._finalizer = weakref.finalize(self, _remove_if_owner, name, os.getpid())
        else:
            self.path = Path(path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()
            self._finalizer = None
        self._seen: set[tuple[str, str]] = set()

    def __getstate__(self) -> dict:
        return {"path": self.path, "_seen": set(self._seen), "_finalizer": None}

    def record(self, kind: str, path: str | os.PathLike, reason: str) -> bool:
        """Log (kind, path) once per process; True the first time this process sees it."""
        key = (kind, str(path))
        if key in self._seen:
            return False
        self._seen.add(key)
        clean = " ".join(str(reason).split())
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(f"{kind}\t{path}\t{clean}\n")
        return True

    def seen(self, kind: str, path: str | os.PathLike) -> bool:
        """Whether THIS process already logged (kind, path) (cheap, no file read)."""
        return (kind, str(path)) in self._seen

    def entries(self, kind: str) -> dict[str, str]:
        """path -> first reason, for every process's records of `kind`."""
        found: dict[str, str] = {}
        if not self.path.exists():
            return found
        for line in self.path.read_text(encoding="utf-8").splitlines():
            parts = line.split("\t", 2)
            if len(parts) == 3 and parts[0] == kind:
                found.setdefault(parts[1], parts[2])
        return found


def _remove_if_owner(name: str, pid: int) -> None:
    if os.getpid() == pid:
        try:
            os.unlink(name)
        except OSError:
            pass


# -- the dataset ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoRecord:
    """One labelled video: where it is, its class index, and a stable id (relative name)."""

    path: Path
    label: int
    video_id: str


class VideoClipDataset(Dataset):
    """Labelled videos -> (clip, label), clip float32 (T, 3, R, R) normalised with normalize_clip.

    train mode: one item per video, a random clip and random crop/flip every access.
    eval mode: `clips_per_video` = N items per video, deterministic; item i covers video i // N
    (`video_index[i]`). Counters: `videos_missing` (listed but absent, dropped at construction),
    `videos_skipped` (corrupt), `videos_short` (held last frame), `skipped_videos` (missing +
    corrupt, the number the evaluator reports). With `cache` (a FrameCache or a directory,
    built at `cache_short_side`), frames come from memory-mapped uint8 arrays decoded once.

    Options: sampling "consecutive" (every `frame_step`-th frame; 1 = native fps) or "sparse"
    (TSN, one frame per segment; frame_step unused); `short_side` downscales while decoding
    (without cache); `threads` FFmpeg threads per decoder; `scan` (default: eval mode only)
    validates all videos at construction; `skip_log` names the shared problem log (default: a
    temporary file); `raw` returns clips in [0, 1] instead of normalised.
    """

    def __init__(
        self,
        videos: Sequence[VideoRecord],
        class_names: Sequence[str],
        *,
        frames: int = 16,
        resolution: int = 224,
        mode: str = "train",
        clips_per_video: int = 1,
        sampling: str = "consecutive",
        frame_step: int = 1,
        cache: FrameCache | str | os.PathLike | None = None,
        cache_short_side: int | None = 128,
        short_side: int | None = None,
        threads: int = 1,
        scan: bool | None = None,
        skip_log: str | os.PathLike | None = None,
        raw: bool = False,
        max_retries: int = 20,
        name: str = "videos",
    ) -> None:
        ints = (("frames", frames), ("resolution", resolution), ("clips_per_video", clips_per_video),
                ("frame_step", frame_step), ("threads", threads), ("max_retries", max_retries))
        for key, value in ints:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{key} must be an int >= 1, got {value!r}")
        for key, value in (("short_side", short_side), ("cache_short_side", cache_short_side)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{key} must be None or an int >= 1, got {value!r}")
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        self.mode = _check_mode(mode)
        if self.mode == "train" and clips_per_video != 1:
            raise ValueError(f"clips_per_video={clips_per_video} applies to eval mode only; "
                             "train draws one clip per video")
        if not class_names:
            raise ValueError(f"{name}: class_names is empty")
        self.name = name
        self.class_names = list(class_names)
        self.frames, self.resolution = int(frames), int(resolution)
        self.clips_per_video = int(clips_per_video)
        self.sampling, self.frame_step = sampling, int(frame_step)
        self.short_side, self.threads, self.max_retries = short_side, int(threads), int(max_retries)
        self.transform = ClipTransform(self.resolution, self.mode, raw=raw)
        self.skip_log = SkipLog(skip_log)
        self._cache = _as_cache(cache, cache_short_side)
        cache_side = None if self._cache is None else self._cache.short_side
        if cache_side is not None and cache_side < self.resolution:
            warnings.warn(f"{name}: cache short side {cache_side} < resolution {self.resolution}: "
                          "frames will be upscaled", VideoDataWarning, stacklevel=2)

        present, missing = [], []
        for rec in videos:
            if not isinstance(rec, VideoRecord):
                raise TypeError(f"videos must hold VideoRecord, got {type(rec).__name__}")
            if not 0 <= rec.label < len(self.class_names):
                raise ValueError(f"{rec.video_id}: label {rec.label} outside [0, {len(self.class_names)})")
            (present if rec.path.is_file() else missing).append(rec)
        self.videos: list[VideoRecord] = present
        self.missing: list[VideoRecord] = missing
        self._paths = frozenset(str(r.path) for r in present)  # counters count only these
        if missing:
            shown = ", ".join(r.video_id for r in missing[:3]) + (", ..." if len(missing) > 3 else "")
            total = len(missing) + len(present)
            warnings.warn(f"{name}: {len(missing)} of {total} listed videos are missing ({shown})",
                          VideoDataWarning, stacklevel=2)
        if not present:
            raise ValueError(f"{name}: none of the {len(missing)} listed videos exists")
        if scan if scan is not None else self.mode == "eval":
            self.scan(progress=len(present) > 1000)

    # -- counters and indices

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def videos_missing(self) -> int:
        return len(self.missing)

    @property
    def videos_skipped(self) -> int:
        """Corrupt videos found so far, by scan() or by any worker (read from the shared log)."""
        return len(self._paths.intersection(self.skip_log.entries("corrupt")))

    @property
    def videos_short(self) -> int:
        return len(self._paths.intersection(self.skip_log.entries("short")))

    @property
    def skipped_videos(self) -> int:
        """Listed videos that yield no real clip: missing + corrupt (what evaluate reports)."""
        return self.videos_missing + self.videos_skipped

    @property
    def video_index(self) -> np.ndarray:
        """Item -> video id (position in `videos`): item i covers video i // clips_per_video."""
        return np.repeat(np.arange(len(self.videos)), self.clips_per_video)

    @property
    def labels(self) -> np.ndarray:
        """Label of every item, without decoding."""
        return np.repeat(np.array([r.label for r in self.videos], dtype=np.int64), self.clips_per_video)

    def __len__(self) -> int:
        return len(self.videos) * self.clips_per_video

    # -- validation

    def scan(self, *, progress: bool = False) -> dict[str, int]:
        """Validate every video once (header + first frame, or a full decode into the cache) and drop
        the corrupt ones from the index. Call before building DataLoaders: it changes len()."""
        from tqdm import tqdm

        need = frames_needed(self.frames, self.frame_step, self.sampling)
        good: list[VideoRecord] = []
        for rec in tqdm(self.videos, desc=f"scan {self.name}", disable=not progress, leave=False):
            try:
                if self._cache is not None:
                    n = int(self._cache.frames(rec.path).shape[0])
                else:
                    n = probe_video(rec.path).num_frames
            except DECODE_ERRORS as e:
                self._report_corrupt(rec, e)
                continue
            if n < need:
                self._report_short(rec, f"{n} frames < {need}")
            good.append(rec)
        self.videos = good
        if not good:
            raise ValueError(f"{self.name}: no decodable video left after scan")
        return {"videos": len(good), "corrupt": self.videos_skipped, "short": self.videos_short,
                "missing": self.videos_missing}

    def _report_corrupt(self, rec: VideoRecord, error: BaseException) -> None:
        reason = str(error).replace(f"{rec.path}: ", "")
        if self.skip_log.record("corrupt", rec.path, reason):
            warnings.warn(f"{self.name}: skipping undecodable video {rec.path}: {reason}",
                          VideoDataWarning, stacklevel=3)

    def _report_short(self, rec: VideoRecord, reason: str) -> None:
        self.skip_log.record("short", rec.path, f"{reason}: last frame held")

    # -- items

    def _indices(self, num_frames: int, clip: int) -> np.ndarray:
        if self.mode == "train":
            return train_indices(num_frames, self.frames, step=self.frame_step, sampling=self.sampling)
        return eval_indices(num_frames, self.frames, clip, self.clips_per_video, step=self.frame_step,
                            sampling=self.sampling)

    def load_frames(self, video: int, clip: int = 0) -> np.ndarray:
        """uint8 (T, H, W, 3) frames of one clip of video `video` (decoded or from the cache)."""
        rec = self.videos[video]
        if self._cache is not None:
            arr = self._cache.frames(rec.path)
            n = int(arr.shape[0])
            frames, real = np.ascontiguousarray(arr[self._indices(n, clip)]), self.frames
        else:
            with VideoReader(rec.path, threads=self.threads) as reader:
                n = reader.num_frames
                if n <= 0:
                    raise VideoDecodeError(f"{rec.path}: header reports no frames")
                if self.mode == "eval":
                    check_resize_budget(
                        rec.path, *scaled_size(*reader.size, self.short_side), self.frames, self.resolution
                    )
                frames, real = reader.read(self._indices(n, clip), short_side=self.short_side)
        need = frames_needed(self.frames, self.frame_step, self.sampling)
        if n < need:
            self._report_short(rec, f"{n} frames < {need}")
        elif real < self.frames:
            self._report_short(rec, f"header says {n} frames but the stream ended early")
        return frames

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        n_items = len(self)
        i = int(index) + (n_items if index < 0 else 0)
        if not 0 <= i < n_items:
            raise IndexError(f"index {index} out of range for {n_items} items")
        video, clip = divmod(i, self.clips_per_video)
        label = self.videos[video].label
        try:
            if self.skip_log.seen("corrupt", self.videos[video].path):
                raise VideoDecodeError("already found corrupt")
            frames = self.load_frames(video, clip)
        except DECODE_ERRORS as e:
            self._report_corrupt(self.videos[video], e)
            if self.mode == "eval":
                return self._blank(), label
            frames, label = self._replacement(video)
        return self.transform(frames), label

    def _replacement(self, video: int) -> tuple[np.ndarray, int]:
        """The next video after `video` (cyclically) that decodes: deterministic given the bad set."""
        n = len(self.videos)
        for k in range(1, min(self.max_retries, n - 1) + 1):
            j = (video + k) % n
            rec = self.videos[j]
            if self.skip_log.seen("corrupt", rec.path):
                continue
            try:
                return self.load_frames(j, 0), rec.label
            except DECODE_ERRORS as e:
                self._report_corrupt(rec, e)
        raise RuntimeError(f"{self.name}: {self.videos[video].path} and the next {self.max_retries} videos "
                           "all failed to decode; run scan() to drop corrupt files first")

    def _blank(self) -> torch.Tensor:
        """An eval placeholder: every pixel at the ImageNet mean colour (0 after normalisation)."""
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
        blank = mean.expand(self.frames, 3, self.resolution, self.resolution).contiguous()
        return blank if self.transform.raw else normalize_clip(blank)

    def raw_clip(self, index: int) -> np.ndarray:
        """uint8 (T, H, W, 3) frames behind item `index` before transforms (eval: deterministic)."""
        video, clip = divmod(int(index), self.clips_per_video)
        return self.load_frames(video, clip)


def _as_cache(cache: FrameCache | str | os.PathLike | None, short_side: int | None) -> FrameCache | None:
    if cache is None:
        return None
    from respike_neuro.data.frame_cache import FrameCache

    if isinstance(cache, FrameCache):
        return cache
    if isinstance(cache, (str, os.PathLike)):
        return FrameCache(cache, short_side=short_side)
    raise TypeError(f"cache must be a FrameCache, a directory or None, got {type(cache).__name__}")


# -- deterministic held-out validation -----------------------------------------------------------


def stable_hash(text: str) -> int:
    """A process-independent hash (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "big")


def holdout_by_group(labels: Sequence[int], groups: Sequence[str], fraction: float) -> np.ndarray:
    """Boolean mask of items held out for validation, whole groups at a time, per class.

    Within each class, groups (e.g. clips cut from one source video) are ordered by a stable hash
    of their name and taken until at least `fraction` of that class's items are held out; a class
    with a single group keeps it for training. Deterministic and independent of input order.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction!r}")
    if len(labels) != len(groups):
        raise ValueError(f"labels ({len(labels)}) and groups ({len(groups)}) differ in length")
    labels_a = np.asarray(labels)
    held = np.zeros(len(labels_a), dtype=bool)
    if fraction == 0.0:
        return held
    for cls in np.unique(labels_a):
        members = np.flatnonzero(labels_a == cls)
        by_group: dict[str, list[int]] = {}
        for m in members:
            by_group.setdefault(groups[m], []).append(int(m))
        if len(by_group) < 2:
            continue
        goal, taken = fraction * len(members), 0
        order = sorted(by_group, key=lambda name: (stable_hash(name), name))
        for g in order[:-1]:  # the last group always stays in training
            if taken >= goal:
                break
            held[by_group[g]] = True
            taken += len(by_group[g])
    return held
