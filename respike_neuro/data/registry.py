"""A dataset is a name: build_dataset("ucf101", root=..., split="train", ...) -> Dataset.

Every dataset returned gives (clip, label), clip float32 (T, 3, R, R) normalised by
`normalize_clip`, label int, and has `class_names` / `num_classes`; the real ones also have
`video_index` (eval: item i covers video i // clips_per_video) and the counters
`videos_skipped`, `videos_missing`, `videos_short`, `skipped_videos` (respike_neuro.data.video).

Names: "synthetic" (built in, generated on the fly; root/fold/mode/stride do not apply and are
ignored), "ucf101", "hmdb51", "kinetics400" (aliases with dashes/underscores, "k400", ...).
`mode` is "train" (random clip, RandomResizedCrop + flip) or "val"/"test"/"eval" (N uniformly
spaced clips, resize + centre crop); by default it follows the split. `stride`, when given, is the
key/residual stride s and only checks that `frames` is a multiple of it, so a bad config fails
here rather than in the first forward pass.

`build_split(data_config, model_config, split)` is the call train, evaluate and qat make: one split
of a run's configured dataset at the model's frames/resolution/stride. `InMemory` computes every item
once (data.cache: true).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import Dataset
from tqdm import tqdm

if TYPE_CHECKING:
    from respike_neuro.config import DataConfig, ModelConfig

DATASETS = ("synthetic", "ucf101", "hmdb51", "kinetics400")
_ALIASES = {
    "synthetic": "synthetic", "ucf101": "ucf101", "ucf": "ucf101", "hmdb51": "hmdb51", "hmdb": "hmdb51",
    "kinetics400": "kinetics400", "kinetics": "kinetics400", "k400": "kinetics400",
}
SPLITS = ("train", "val", "test")
_FOLDS = {"ucf101": (1, 2, 3), "hmdb51": (1, 2, 3)}


def official_folds(name: str) -> tuple[int, ...]:
    """The official train/test folds of dataset `name` (empty when it has one fixed split)."""
    return _FOLDS.get(canonical_name(name), ())


def canonical_name(name: str) -> str:
    """'UCF-101' -> 'ucf101'; ValueError listing the known names otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a str, got {type(name).__name__}")
    key = name.lower().replace("-", "").replace("_", "").replace(" ", "")
    if key not in _ALIASES:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return _ALIASES[key]


def build_dataset(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    split: str = "train",
    fold: int = 1,
    frames: int = 16,
    resolution: int = 224,
    stride: int | None = None,
    mode: str | None = None,
    **options: Any,
) -> Dataset:
    """Build dataset `name` for one split. Extra options go to the dataset's constructor
    (real datasets: clips_per_video, sampling, frame_step, cache, scan, val_groups, ...;
    synthetic: num_clips, seed, scenes, motions, ...)."""
    key = canonical_name(name)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if mode is not None and mode not in ("train", "val", "test", "eval"):
        raise ValueError(f"mode must be 'train', 'val', 'test' or 'eval', got {mode!r}")
    for what, value in (("frames", frames), ("resolution", resolution)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{what} must be an int >= 1, got {value!r}")
    if stride is not None:
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise ValueError(f"stride must be an int >= 1, got {stride!r}")
        if frames % stride:
            raise ValueError(f"frames={frames} is not a multiple of the key/residual stride {stride}")

    if key == "synthetic":
        from respike_neuro.data.synthetic import SyntheticActions

        options.pop("clips_per_video", None)  # one clip per synthetic "video"
        return SyntheticActions(split=split, frames=frames, resolution=resolution, **options)

    if root is None:
        raise ValueError(f"dataset {key!r} needs root= (the directory holding its official layout)")
    mode = mode or ("train" if split == "train" else "eval")
    common = dict(split=split, frames=frames, resolution=resolution, mode=mode, **options)
    if key == "ucf101":
        from respike_neuro.data.ucf101 import UCF101

        return UCF101(root, fold=fold, **common)
    if key == "hmdb51":
        from respike_neuro.data.hmdb51 import HMDB51

        return HMDB51(root, fold=fold, **common)
    from respike_neuro.data.kinetics import Kinetics400

    return Kinetics400(root, fold=fold, **common)


def build_split(data: DataConfig, model: ModelConfig, split: str) -> Dataset:
    """One split of the configured dataset (respike_neuro.data.registry) at the model's frames,
    resolution and stride; val/test in eval mode (clips_per_video clips per video, centre crop)."""
    mode = "train" if split == "train" else "eval"
    kwargs: dict[str, Any] = dict(
        root=data.root,
        split=split,
        fold=data.fold,
        frames=model.frames,
        resolution=model.resolution,
        stride=model.stride,
        mode=mode,
    )
    if canonical_name(data.dataset) == "synthetic":
        counts = {"train": data.train_clips, "val": data.val_clips, "test": data.test_clips}
        kwargs.update(num_clips=counts[split], seed=data.seed)
    elif mode == "eval":
        kwargs.update(clips_per_video=data.clips_per_video)
    kwargs.update(data.options)
    return build_dataset(data.dataset, **kwargs)


class InMemory(Dataset):
    """All items of `dataset` computed once; attributes (class_names, video_index, ...) pass through."""

    def __init__(self, dataset: Dataset, *, desc: str = "cache", progress: bool = True) -> None:
        self.base = dataset
        items = [dataset[i] for i in tqdm(range(len(dataset)), desc=desc, leave=False, disable=not progress)]
        self.clips = torch.stack([torch.as_tensor(c) for c, _ in items])
        self.labels = torch.as_tensor([int(y) for _, y in items], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.clips[index], int(self.labels[index])

    def __getattr__(self, name: str) -> Any:
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)
