"""Kinetics-400 (Kay et al. 2017) from its CSV annotations and downloaded clips.

    <root>/annotations/{train,validate,test}.csv   (or directly in <root>; val.csv also accepted)
        label,youtube_id,time_start,time_end,split[,is_cc]
    <root>/{train,val|validate,test}/[<label>/]<youtube_id>_<start:06d>_<end:06d>.mp4

Videos are found by file name anywhere under the split's folder, so flat folders and per-label
subfolders both work (.mp4, .mkv, .webm, .avi). YouTube takedowns mean every copy of Kinetics
misses some clips: missing ones are dropped, counted (`videos_missing`) and reported in one
warning. Labels are the sorted class names of train.csv, the same for every split.

Splits, as the paper evaluates: 'test' is the official validation set (validate.csv, the set
papers report on; `test_set="test"` takes test.csv instead), and 'val' is held out of train.csv
(`val_fraction` of every class, chosen by a stable hash of the YouTube id), so model selection
never sees the set the result is reported on.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from respike_neuro.data.video import VideoClipDataset, VideoRecord, holdout_by_group

SPLITS = ("train", "val", "test")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi")
CSV_NAMES = {"train": ("train.csv",), "validate": ("validate.csv", "val.csv"), "test": ("test.csv",)}
VIDEO_DIRS = {"train": ("train",), "validate": ("val", "validate", "valid"), "test": ("test",)}
REQUIRED_COLUMNS = ("label", "youtube_id", "time_start", "time_end")


def clip_name(youtube_id: str, start: int, end: int) -> str:
    """The file stem of a downloaded clip: '<id>_<start:06d>_<end:06d>'."""
    return f"{youtube_id}_{start:06d}_{end:06d}"


def find_csv(root: Path, which: str, annotations_dir: Path | None = None) -> Path:
    dirs = [annotations_dir] if annotations_dir is not None else [root / "annotations", root]
    for d in dirs:
        for name in CSV_NAMES[which]:
            if (d / name).is_file():
                return d / name
    looked = ", ".join(str(d / n) for d in dirs for n in CSV_NAMES[which])
    raise ValueError(f"Kinetics annotation for {which!r} not found (looked for {looked})")


def read_annotations(path: Path) -> list[tuple[str, str]]:
    """(label, clip stem) for every row of a Kinetics CSV."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; header is {reader.fieldnames}")
        rows = []
        for n, row in enumerate(reader, 2):
            try:
                start, end = int(float(row["time_start"])), int(float(row["time_end"]))
            except (TypeError, ValueError):
                raise ValueError(f"{path}:{n}: bad time_start/time_end {row['time_start']!r}, "
                                 f"{row['time_end']!r}") from None
            if not row["label"] or not row["youtube_id"]:
                raise ValueError(f"{path}:{n}: empty label or youtube_id")
            rows.append((row["label"], clip_name(row["youtube_id"], start, end)))
    if not rows:
        raise ValueError(f"{path} has no rows")
    return rows


def index_videos(folder: Path) -> dict[str, Path]:
    """clip stem -> path of every video file under `folder` (any depth)."""
    found: dict[str, Path] = {}
    for dirpath, _, files in os.walk(folder):
        for name in files:
            stem, ext = os.path.splitext(name)
            if ext.lower() in VIDEO_EXTENSIONS:
                found.setdefault(stem, Path(dirpath) / name)
    return found


def find_video_dir(root: Path, which: str) -> Path | None:
    for name in VIDEO_DIRS[which]:
        if (root / name).is_dir():
            return root / name
    return None


def kinetics_records(root: str | os.PathLike, *, split: str = "train", val_fraction: float = 0.02,
                     test_set: str = "validate", annotations_dir: str | os.PathLike | None = None,
                     videos_dir: str | os.PathLike | None = None) -> tuple[list[VideoRecord], list[str]]:
    """The clips of one split (missing files keep a path that does not exist), and the class names."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if test_set not in ("validate", "test"):
        raise ValueError(f"test_set must be 'validate' or 'test', got {test_set!r}")
    root_p = Path(root)
    if not root_p.is_dir():
        raise ValueError(f"Kinetics root {root_p} is not a directory")
    ann = Path(annotations_dir) if annotations_dir is not None else None
    train_rows = read_annotations(find_csv(root_p, "train", ann))
    class_names = sorted({label for label, _ in train_rows})
    which = "train" if split != "test" else test_set
    rows = train_rows if which == "train" else read_annotations(find_csv(root_p, which, ann))
    by_name = {c: i for i, c in enumerate(class_names)}
    unknown = sorted({label for label, _ in rows if label not in by_name})
    if unknown:
        raise ValueError(f"{which} annotations use labels absent from train.csv: {unknown[:5]}")
    items = [(by_name[label], stem) for label, stem in rows]
    if split != "test":
        if split == "val" and val_fraction == 0:
            raise ValueError("the val split is empty: val_fraction=0 keeps all of train.csv for training")
        held = holdout_by_group([y for y, _ in items], [stem for _, stem in items], val_fraction)
        items = [it for it, h in zip(items, held) if h == (split == "val")]
    folder = Path(videos_dir) if videos_dir is not None else find_video_dir(root_p, which)
    if folder is None:
        raise ValueError(f"Kinetics video folder for {which!r} not found under {root_p} "
                         f"(expected one of {VIDEO_DIRS[which]})")
    found = index_videos(folder)
    records = [VideoRecord(found.get(stem, folder / f"{stem}.mp4"), label, stem) for label, stem in items]
    return records, class_names


class Kinetics400(VideoClipDataset):
    """Kinetics-400 clips; see the module docstring. Extra options go to VideoClipDataset."""

    def __init__(self, root: str | os.PathLike, *, split: str = "train", frames: int = 16,
                 resolution: int = 224, mode: str | None = None, val_fraction: float = 0.02,
                 test_set: str = "validate", annotations_dir: str | os.PathLike | None = None,
                 videos_dir: str | os.PathLike | None = None, fold: int | None = None,
                 **options: Any) -> None:
        if fold not in (None, 1):
            raise ValueError(f"Kinetics-400 has one official split; fold must be 1 or None, got {fold!r}")
        records, class_names = kinetics_records(
            root, split=split, val_fraction=val_fraction, test_set=test_set,
            annotations_dir=annotations_dir, videos_dir=videos_dir)
        self.root, self.split = Path(root), split
        super().__init__(records, class_names, frames=frames, resolution=resolution,
                         mode=mode or ("train" if split == "train" else "eval"),
                         name=f"Kinetics-400 {split}", **options)
