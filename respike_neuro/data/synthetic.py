"""Built-in procedurally generated action clips: the embedded default dataset.

No dataset can be downloaded here, so the pipeline ships its own. The class of a clip is a pair
(scene, motion), built so that neither branch alone can classify it:

* scene (appearance) is a STATIC layout (lane lines of a pool, the lines of a court, mowing
  stripes of a field, ...) with colours drawn from one class-independent distribution, plus
  static clutter. It is visible in every frame and cancels exactly in a residual
  r_j = f_j - f_key, so a residual-only branch sees nothing of it.
* motion is how the actor (the largest object) moves: left/right/up/down, or a clockwise /
  counter-clockwise orbit, with random speed and position. The path is centred in time on the
  key frames (every `stride`-th frame), so the bag of actor positions in the key frames is
  distributed identically for opposite directions: a per-frame classifier whose predictions are
  averaged over key frames cannot tell them apart, while the frames of a segment show the
  direction clearly (1.9-3.2 px per frame at 64x64). Over ALL frames the bag is only nearly
  symmetric (shifted by (T-1)/2 - mean key time frames of motion).

Moving objects (actor and distractors) are translucent: they ADD a signed colour offset a to
the scene, f = scene + sum_o a_o * mask_o, instead of occluding it. Residuals are then
a_o * (mask_o(t_j) - mask_o(t_key)) + noise, free of any scene pixel, so appearance cannot leak
into the residual branch through what a moving object covers or uncovers. The actor's shape
and hue are random per clip and carry no label information (anything that moves is visible
in residuals). Distractors are smaller objects moving in random directions, of either polarity.

The actor is brighter than what it crosses (actor_polarity="bright": its offset has a positive
channel sum). A residual alone cannot tell (a, right) from (-a, left): a * (mask_t - mask_key)
is the same image for both. With a random polarity ("random", the generator before 2026-11-28)
the direction is only defined jointly by the residual and the actor's contrast in the key frame,
a sign product the small default model did not learn on 2 CPU cores (test top-1 0.55-0.63: scene
and axis right, direction near chance, and near-tie decisions that any arithmetic change flips).
With a fixed polarity the residual frames carry the direction and the key frames the scene, the
division of labour the hybrid is built for; fusion at the head then suffices (ablation E8 = E9 in
the README), while "random" is the setting where the spatially aligned cross-attention pays.

Every item is rendered on the fly from a numpy Generator seeded by (seed, split, index), so it
does not depend on worker or access order, and the three splits are disjoint streams.
"""

from __future__ import annotations

import io
import math
import numbers
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from respike_neuro.cli import ArgumentParser
from respike_neuro.data.clips import IMAGENET_MEAN, IMAGENET_STD, normalize_clip
from respike_neuro.data.synthetic_drawing import (
    ACTOR_RADIUS,
    DISTRACTOR_RADIUS,
    actor_path,
    add_mover,
    colour_offset,
    distractor_path,
    render_scene,
    stamp_static,
)

SCENES = ("pool", "court", "field", "track", "tiles")
MOTIONS = ("left", "right", "up", "down", "clockwise", "counterclockwise")
DEFAULT_SCENES = ("pool", "court", "field")
DEFAULT_MOTIONS = ("left", "right", "up", "down")
SPLITS = {"train": 0, "val": 1, "test": 2}
POLARITIES = ("bright", "random")
_SALT = 0x5E1F1C  # separates this generator's seed stream from other users of (seed, split, index)
MIN_RESOLUTION = 32
_MEAN = np.asarray(IMAGENET_MEAN, dtype=np.float32)[:, None, None]
_STD = np.asarray(IMAGENET_STD, dtype=np.float32)[:, None, None]
_INT8_STD = math.sqrt((256**2 - 1) / 12)  # std of a uniform int8

@dataclass(frozen=True)
class ClipSample:
    """One rendered clip and what made it (for plots and tests).

    raw: (T, 3, H, W) float32 in [0, 1]; scene: (3, H, W) static background the clip was built on,
    before pixel noise; moving: (T, H, W) bool, pixels touched by any moving object in that frame;
    actor_xy: (T, 2) actor centre (x, y) in pixels; actor_offset: (3,) its additive colour.
    """

    raw: np.ndarray
    label: int
    scene_name: str
    motion_name: str
    scene: np.ndarray
    moving: np.ndarray
    actor_xy: np.ndarray
    actor_offset: np.ndarray


class SyntheticActions(Dataset):
    """Procedural action clips; item i is (clip, label), clip (T, 3, H, W) float32 normalised.

    Classes are all (scene, motion) pairs, named "scene_motion", scene-major. Labels are
    index % num_classes, so any num_clips that is a multiple of num_classes is exactly balanced.

    split: "train" | "val" | "test", disjoint streams; num_clips: dataset length; frames: T;
    resolution: square side (>= 32); seed: the whole dataset's seed; stride: key-frame stride s
    the motion is centred on (see module doc); scenes / motions: names from SCENES / MOTIONS;
    distractors: small movers in random directions; clutter: static objects painted into the
    scene; noise: std of per-frame pixel noise (uniform) in [0, 1] units; actor_polarity: "bright"
    or "random" (see module doc; "random" renders the pre-2026-11-28 clips bit for bit); raw: return
    clips in [0, 1] instead of normalised.
    """

    def __init__(
        self,
        *,
        split: str = "train",
        num_clips: int = 1200,
        frames: int = 16,
        resolution: int = 64,
        seed: int = 0,
        stride: int = 4,
        scenes: tuple[str, ...] | list[str] = DEFAULT_SCENES,
        motions: tuple[str, ...] | list[str] = DEFAULT_MOTIONS,
        distractors: int = 2,
        clutter: int = 3,
        noise: float = 0.02,
        actor_polarity: str = "bright",
        raw: bool = False,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
        checks = (
            ("num_clips", num_clips, 1), ("frames", frames, 1), ("resolution", resolution, MIN_RESOLUTION),
            ("seed", seed, 0), ("stride", stride, 1),
            ("distractors", distractors, 0), ("clutter", clutter, 0),
        )
        for name, value, low in checks:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        if isinstance(noise, bool) or not isinstance(noise, numbers.Real):
            raise TypeError(f"noise must be a number, got {type(noise).__name__}")
        if not 0.0 <= noise <= 0.2:
            raise ValueError(f"noise must be a pixel std in [0, 0.2], got {noise!r}")
        if actor_polarity not in POLARITIES:
            raise ValueError(f"actor_polarity must be one of {POLARITIES}, got {actor_polarity!r}")
        self.scenes = _check_names("scenes", scenes, SCENES)
        self.motions = _check_names("motions", motions, MOTIONS)
        self.split = split
        self.num_clips = int(num_clips)
        self.frames = int(frames)
        self.resolution = int(resolution)
        self.seed = int(seed)
        self.stride = int(stride)
        self.distractors = int(distractors)
        self.clutter = int(clutter)
        self.noise = float(noise)
        self.actor_polarity = actor_polarity
        self.raw = bool(raw)
        self.class_names = [f"{s}_{m}" for s in self.scenes for m in self.motions]
        self._grid = np.arange(self.resolution, dtype=np.float32) + 0.5  # pixel centres

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """(clip, label): clip normalised with `normalize_clip` (or in [0, 1] when raw=True)."""
        sample = self.sample(index)
        clip = sample.raw
        if not self.raw:  # normalize_clip's arithmetic, in place in numpy (tests check it is bit-identical)
            clip -= _MEAN
            clip /= _STD
        return torch.from_numpy(clip), sample.label

    def raw_clip(self, index: int) -> torch.Tensor:
        """The unnormalised (T, 3, H, W) clip in [0, 1], for visualisation."""
        return torch.from_numpy(self.sample(index).raw)

    def label_of(self, index: int) -> int:
        """Label of item `index` without rendering it."""
        return self._check_index(index) % self.num_classes

    def _check_index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        i = int(index) + (self.num_clips if index < 0 else 0)
        if not 0 <= i < self.num_clips:
            raise IndexError(f"index {index} out of range for {self.num_clips} clips")
        return i

    def sample(self, index: int) -> ClipSample:
        """Render item `index`: deterministic in (seed, split, index) and the constructor options."""
        i = self._check_index(index)
        rng = np.random.default_rng(np.random.SeedSequence([_SALT, self.seed, SPLITS[self.split], i]))
        label = i % self.num_classes
        scene_name = self.scenes[label // len(self.motions)]
        motion_name = self.motions[label % len(self.motions)]
        r, t = self.resolution, self.frames

        scene = render_scene(rng, scene_name, self._grid)
        for _ in range(self.clutter):
            stamp_static(rng, scene, self._grid)

        clip = np.empty((t, 3, r, r), dtype=np.float32)
        clip[:] = scene
        moving = np.zeros((t, r, r), dtype=bool)
        radius = r * rng.uniform(*ACTOR_RADIUS)
        actor_xy = actor_path(rng, motion_name, t, r, radius, self.stride)
        actor_offset = colour_offset(rng)
        if self.actor_polarity == "bright" and actor_offset.sum() < 0:  # flipping draws nothing from rng
            actor_offset = -actor_offset
        add_mover(clip, moving, self._grid, actor_xy, radius, rng.integers(3), actor_offset)
        for _ in range(self.distractors):
            d_radius = r * rng.uniform(*DISTRACTOR_RADIUS)
            add_mover(clip, moving, self._grid, distractor_path(rng, t, r), d_radius,
                       rng.integers(3), colour_offset(rng))
        if self.noise > 0:  # uniform noise of std `noise` from raw bytes: 20x cheaper than Gaussian
            bytes_ = np.frombuffer(rng.bytes(clip.size), dtype=np.int8).reshape(clip.shape)
            clip += np.multiply(bytes_, np.float32(self.noise / _INT8_STD), dtype=np.float32)
        np.clip(clip, 0.0, 1.0, out=clip)
        return ClipSample(clip, label, scene_name, motion_name, scene, moving, actor_xy, actor_offset)


_DISTRIBUTION_KEYS = ("seed", "scenes", "motions", "distractors", "clutter", "noise", "actor_polarity")


def trained_distribution(train_config: dict | None) -> dict:
    """The SyntheticActions keywords (seed, generator options) of the built-in data a checkpoint was trained
    on, from its recorded train_config, so the demo, calibration and validation clips of that model come
    from its own distribution. {} (the defaults) when it was trained on another dataset or has no record."""
    data = train_config.get("data") if isinstance(train_config, dict) else None
    if not isinstance(data, dict) or str(data.get("dataset", "synthetic")).lower() != "synthetic":
        return {}
    values = {"seed": data.get("seed", 0), **(data.get("options") or {})}
    return {k: v for k, v in values.items() if k in _DISTRIBUTION_KEYS}


def _check_names(what: str, names, allowed: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(names, str) or not names:
        raise ValueError(f"{what} must be a non-empty list of names from {allowed}, got {names!r}")
    names = tuple(names)
    bad = [n for n in names if n not in allowed]
    if bad:
        raise ValueError(f"unknown {what} {bad}; choose from {allowed}")
    if len(set(names)) != len(names):
        raise ValueError(f"{what} has duplicates: {names}")
    return names


# ----------------------------------------------------------------------------------------------
# Figure: one row per class, key frames then the first segment's residuals.


def render_class_grid(out: Path, *, resolution: int = 64, frames: int = 16, stride: int = 4, seed: int = 0,
                      split: str = "train", dpi: int = 90) -> Path:
    """Write a PNG grid: per class, the key frames (ANN input) and the residuals of the first
    segment (SNN input) projected on the actor's colour, red = actor now, blue = actor at key frame."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from respike_neuro.data.clips import split_key_residual

    if stride < 2:
        raise ValueError(f"stride must be >= 2 (a segment needs residual frames), got {stride}")
    if frames < stride or frames % stride:
        raise ValueError(f"frames={frames} must be a positive multiple of stride={stride}")
    if not 20 <= dpi <= 600:
        raise ValueError(f"dpi must be in [20, 600], got {dpi}")
    ds = SyntheticActions(split=split, num_clips=len(DEFAULT_SCENES) * len(DEFAULT_MOTIONS),
                          frames=frames, resolution=resolution, seed=seed, stride=stride)
    n_keys = min(4, frames // stride)
    cols = n_keys + stride - 1
    fig, axes = plt.subplots(ds.num_classes, cols, figsize=(0.95 * cols + 1.3, 0.95 * ds.num_classes + 0.9),
                             squeeze=False)
    std = np.asarray(IMAGENET_STD, dtype=np.float32)
    for label in range(ds.num_classes):
        s = ds.sample(label)  # labels are index % num_classes
        key, residual = split_key_residual(normalize_clip(torch.from_numpy(s.raw))[None], stride)
        direction = s.actor_offset / std
        contrast = float(np.linalg.norm(direction))
        proj = np.einsum("jchw,c->jhw", residual[0, 0].numpy(), direction / contrast)
        row = axes[label]
        for k in range(n_keys):
            row[k].imshow(s.raw[k * stride].transpose(1, 2, 0), interpolation="nearest")
        for j in range(stride - 1):
            row[n_keys + j].imshow(proj[j], cmap="RdBu_r", vmin=-contrast, vmax=contrast,
                                   interpolation="nearest")
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(ds.class_names[label], rotation=0, ha="right", va="center", fontsize=9)
    for k in range(n_keys):
        axes[0, k].set_title(f"key t={k * stride}", fontsize=8)
    for j in range(1, stride):
        axes[0, n_keys + j - 1].set_title(f"res t={j}\u2212t=0", fontsize=8)
    fig.suptitle("SyntheticActions: class = scene (static layout) \u00d7 actor motion\n"
                 "left: key frames (ANN input); right: first segment's residuals (SNN input), "
                 "red = actor now, blue = actor at key frame", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    plt.close(fig)
    # Pixel noise makes a true-colour PNG ~3x larger; a 256-colour palette keeps it readable and small.
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            out, optimize=True)
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI: render the class grid PNG. Bad arguments print one line and exit non-zero."""
    parser = ArgumentParser(
        prog="python -m respike_neuro.data.synthetic",
        description="Render one row per class of the built-in synthetic action dataset: key frames "
                    "and the first segment's residual frames.",
    )
    parser.add_argument("--out", type=Path, default=Path("docs/synthetic_classes.png"), help="PNG to write")
    parser.add_argument("--resolution", type=int, default=64,
                        help=f"frame side in pixels (>= {MIN_RESOLUTION})")
    parser.add_argument("--frames", type=int, default=16, help="clip length T")
    parser.add_argument("--stride", type=int, default=4, help="segment length s (key frame + s-1 residuals)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="train", choices=sorted(SPLITS))
    parser.add_argument("--dpi", type=int, default=90)

    args = parser.parse_args(argv)
    try:
        out = render_class_grid(args.out, resolution=args.resolution, frames=args.frames, stride=args.stride,
                                seed=args.seed, split=args.split, dpi=args.dpi)
    except (ValueError, TypeError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"{parser.prog}: error: cannot write {args.out}: {err.strerror or err}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
