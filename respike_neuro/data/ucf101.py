"""UCF-101 (Soomro et al. 2012) from its official layout and three train/test folds.

    <root>/UCF-101/<Class>/v_<Class>_gXX_cYY.avi        (or the class folders directly in <root>)
    <root>/ucfTrainTestlist/classInd.txt                 "1 ApplyEyeMakeup" (1-based)
    <root>/ucfTrainTestlist/trainlist0{1,2,3}.txt        "ApplyEyeMakeup/v_..._g08_c01.avi 1"
    <root>/ucfTrainTestlist/testlist0{1,2,3}.txt         "ApplyEyeMakeup/v_..._g01_c01.avi"

Each of the 25 groups gXX holds clips cut from one long video, and the folds hold out whole
groups (fold k tests on g01-g07, g08-g14, g15-g21). The validation split does the same inside the
training list: its `val_groups` highest-numbered training groups (e.g. g23-g25 for every fold),
so no clip shares its source with a training clip. The test list is never used for validation.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from respike_neuro.data.video import VideoClipDataset, VideoRecord

FOLDS = (1, 2, 3)
SPLITS = ("train", "val", "test")
_GROUP = re.compile(r"_g(\d+)_c\d+", re.IGNORECASE)


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise ValueError(f"UCF-101 split file not found: {path}")
    text = path.read_text(encoding="utf-8", errors="replace")
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def read_class_index(splits_dir: Path) -> list[str]:
    """Class names in label order from classInd.txt (1-based ids, contiguous)."""
    path = splits_dir / "classInd.txt"
    ids: dict[int, str] = {}
    for line in _lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise ValueError(f"{path}: bad line {line!r} (expected '<id> <ClassName>')")
        ids[int(parts[0])] = parts[1]
    if sorted(ids) != list(range(1, len(ids) + 1)):
        raise ValueError(f"{path}: class ids must be 1..{len(ids)}, got {sorted(ids)[:5]}...")
    return [ids[i] for i in range(1, len(ids) + 1)]


def group_of(video_id: str) -> int:
    """The group number XX of '.../v_<Class>_gXX_cYY.avi'."""
    match = _GROUP.search(video_id)
    if match is None:
        raise ValueError(f"UCF-101 video name without _gXX_cYY: {video_id!r}")
    return int(match.group(1))


def parse_split(splits_dir: Path, fold: int, which: str, class_names: list[str]) -> list[tuple[str, int]]:
    """(relative path, 0-based label) for trainlist0k ('train', labels given) or testlist0k ('test')."""
    by_name = {c.lower(): i for i, c in enumerate(class_names)}
    path = splits_dir / f"{which}list0{fold}.txt"
    items = []
    for line in _lines(path):
        parts = line.split()
        rel = parts[0].replace("\\", "/")
        folder = rel.split("/")[0].lower()
        if folder not in by_name:
            raise ValueError(f"{path}: class folder of {rel!r} is not in classInd.txt")
        label = by_name[folder]
        if len(parts) > 1:
            if not parts[1].isdigit() or int(parts[1]) - 1 != label:
                raise ValueError(f"{path}: label {parts[1]!r} of {rel!r} disagrees with classInd.txt "
                                 f"({label + 1} for {class_names[label]})")
        items.append((rel, label))
    if not items:
        raise ValueError(f"{path} lists no videos")
    return items


def val_group_set(train_groups: Iterable[int], val_groups: int | Iterable[int]) -> set[int]:
    """Training groups held out for validation: the `val_groups` highest, or an explicit set."""
    groups = sorted(set(train_groups))
    if isinstance(val_groups, bool):
        raise TypeError("val_groups must be an int or a collection of group numbers, got bool")
    if isinstance(val_groups, int):
        if not 0 <= val_groups < len(groups):
            raise ValueError(f"val_groups must be in [0, {len(groups)}) (training groups), got {val_groups}")
        return set(groups[len(groups) - val_groups:]) if val_groups else set()
    chosen = {int(g) for g in val_groups}
    if not chosen <= set(groups):
        raise ValueError(f"val_groups {sorted(chosen - set(groups))} are not training groups of this fold")
    if chosen == set(groups):
        raise ValueError("val_groups would leave no training group")
    return chosen


def find_layout(root: str | os.PathLike, splits_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """(video directory, split-list directory) under `root`."""
    root_p = Path(root)
    if not root_p.is_dir():
        raise ValueError(f"UCF-101 root {root_p} is not a directory")
    videos = root_p / "UCF-101" if (root_p / "UCF-101").is_dir() else root_p
    splits = Path(splits_dir) if splits_dir is not None else root_p / "ucfTrainTestlist"
    if not splits.is_dir():
        raise ValueError(f"UCF-101 split lists not found: {splits} "
                         "(expected ucfTrainTestlist/ under the root)")
    return videos, splits


def ucf101_records(root: str | os.PathLike, *, split: str = "train", fold: int = 1,
                   val_groups: int | Iterable[int] = 3, splits_dir: str | os.PathLike | None = None
                   ) -> tuple[list[VideoRecord], list[str]]:
    """The videos of one split of one fold, and the class names."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if fold not in FOLDS:
        raise ValueError(f"fold must be one of {FOLDS}, got {fold!r}")
    videos_dir, lists = find_layout(root, splits_dir)
    class_names = read_class_index(lists)
    if split == "test":
        items = parse_split(lists, fold, "test", class_names)
    else:
        train = parse_split(lists, fold, "train", class_names)
        held = val_group_set((group_of(rel) for rel, _ in train), val_groups)
        if split == "val" and not held:
            raise ValueError("the val split is empty: val_groups=0 keeps every training group for training")
        items = [(rel, y) for rel, y in train if (group_of(rel) in held) == (split == "val")]
    records = [VideoRecord(videos_dir / rel, label, rel) for rel, label in items]
    return records, class_names


class UCF101(VideoClipDataset):
    """UCF-101 clips; see the module docstring for layout, folds and the validation split.

    Options beyond these go to VideoClipDataset (clips_per_video, sampling, frame_step, cache, ...).
    """

    def __init__(self, root: str | os.PathLike, *, split: str = "train", fold: int = 1, frames: int = 16,
                 resolution: int = 224, mode: str | None = None, val_groups: int | Iterable[int] = 3,
                 splits_dir: str | os.PathLike | None = None, **options: Any) -> None:
        records, class_names = ucf101_records(root, split=split, fold=fold, val_groups=val_groups,
                                              splits_dir=splits_dir)
        self.root, self.split, self.fold = Path(root), split, fold
        super().__init__(records, class_names, frames=frames, resolution=resolution,
                         mode=mode or ("train" if split == "train" else "eval"),
                         name=f"UCF-101 fold {fold} {split}", **options)
