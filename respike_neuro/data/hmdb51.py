"""HMDB-51 (Kuehne et al. 2011) from its official layout and three 70/30 splits.

    <root>/<class>/<video>.avi                                   (or under <root>/videos, hmdb51_org)
    <root>/testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt
        "<video>.avi <id>" with id 0 = not used in this split, 1 = train, 2 = test

Labels are the class names in sorted order (0..50). The validation split is held out of the
split's training part, per class, whole source videos at a time: HMDB names clips
"<source>_<class>_<body>_<camera>_<people>_<view>_<quality>_<n>.avi"; clips with one <source>
come from one footage (`source_of`). Groups are
picked by a stable hash until `val_fraction` of each class is held out (video.holdout_by_group).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from respike_neuro.data.video import VideoClipDataset, VideoRecord, holdout_by_group

SPLIT_IDS = (1, 2, 3)
SPLITS = ("train", "val", "test")
SPLITS_DIR = "testTrainMulti_7030_splits"
_SPLIT_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<k>[123])\.txt$")


def source_of(video: str, cls: str | None = None) -> str:
    """Grouping key of a clip: its source video, so that clips of one footage stay together.

    Names end in six fields (body, camera, people, view, quality, clip number); what precedes
    them is "<source>_<class>". Names not following that pattern drop only a trailing number.
    """
    stem = Path(video).stem
    parts = stem.rsplit("_", 6)
    if len(parts) == 7 and parts[-1].isdigit():
        head = parts[0]
        if cls and head.endswith(f"_{cls}") and len(head) > len(cls) + 1:
            head = head[: -len(cls) - 1]
        return head
    head, sep, tail = stem.rpartition("_")
    return head if sep and tail.isdigit() else stem


def split_files(splits_dir: Path, fold: int) -> dict[str, Path]:
    """class name -> its split file for split `fold`, sorted by class name."""
    if not splits_dir.is_dir():
        raise ValueError(f"HMDB-51 split directory not found: {splits_dir} "
                         f"(expected {SPLITS_DIR}/ under the root)")
    found = {}
    for p in splits_dir.iterdir():
        m = _SPLIT_FILE.match(p.name)
        if m and int(m.group("k")) == fold:
            found[m.group("cls")] = p
    if not found:
        raise ValueError(f"{splits_dir}: no '<class>_test_split{fold}.txt' files")
    return dict(sorted(found.items()))


def parse_split_file(path: Path) -> list[tuple[str, int]]:
    """(video file name, id) pairs of one split file; ids must be 0, 1 or 2."""
    pairs = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise ValueError(f"{path}:{n}: bad line {line.strip()!r} (expected '<video> <0|1|2>')")
        pairs.append((parts[0], int(parts[1])))
    return pairs


def find_videos_dir(root: Path, class_names: list[str]) -> Path:
    for cand in (root, root / "videos", root / "hmdb51_org", root / "hmdb51"):
        if (cand / class_names[0]).is_dir():
            return cand
    raise ValueError(f"HMDB-51 class folders (e.g. {class_names[0]}/) not found under {root}")


def hmdb51_records(root: str | os.PathLike, *, split: str = "train", fold: int = 1,
                   val_fraction: float = 0.15, splits_dir: str | os.PathLike | None = None,
                   videos_dir: str | os.PathLike | None = None) -> tuple[list[VideoRecord], list[str]]:
    """The videos of one split ('train', 'val', 'test') of official split `fold`, and the class names."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if fold not in SPLIT_IDS:
        raise ValueError(f"fold must be one of {SPLIT_IDS}, got {fold!r}")
    root_p = Path(root)
    if not root_p.is_dir():
        raise ValueError(f"HMDB-51 root {root_p} is not a directory")
    files = split_files(Path(splits_dir) if splits_dir is not None else root_p / SPLITS_DIR, fold)
    class_names = list(files)
    vdir = Path(videos_dir) if videos_dir is not None else find_videos_dir(root_p, class_names)
    wanted_id = 2 if split == "test" else 1
    items = [(cls, video, label) for label, cls in enumerate(class_names)
             for video, vid_id in parse_split_file(files[cls]) if vid_id == wanted_id]
    if split != "test":
        if split == "val" and val_fraction == 0:
            raise ValueError("the val split is empty: val_fraction=0 keeps the whole training part")
        held = holdout_by_group([y for _, _, y in items], [f"{c}/{source_of(v, c)}" for c, v, _ in items],
                                val_fraction)
        items = [it for it, h in zip(items, held) if h == (split == "val")]
    if not items:
        raise ValueError(f"HMDB-51 split {fold} lists no {split} videos")
    records = [VideoRecord(vdir / cls / video, label, f"{cls}/{video}") for cls, video, label in items]
    return records, class_names


class HMDB51(VideoClipDataset):
    """HMDB-51 clips; see the module docstring. Extra options go to VideoClipDataset."""

    def __init__(self, root: str | os.PathLike, *, split: str = "train", fold: int = 1, frames: int = 16,
                 resolution: int = 224, mode: str | None = None, val_fraction: float = 0.15,
                 splits_dir: str | os.PathLike | None = None, videos_dir: str | os.PathLike | None = None,
                 **options: Any) -> None:
        records, class_names = hmdb51_records(root, split=split, fold=fold, val_fraction=val_fraction,
                                              splits_dir=splits_dir, videos_dir=videos_dir)
        self.root, self.split, self.fold = Path(root), split, fold
        super().__init__(records, class_names, frames=frames, resolution=resolution,
                         mode=mode or ("train" if split == "train" else "eval"),
                         name=f"HMDB-51 split {fold} {split}", **options)
