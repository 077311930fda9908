"""Model configuration: one frozen dataclass, loadable from YAML/dicts with strict key checking.

The reference configuration (`ModelConfig()`) is the authors' network parameter for parameter;
`small()` is the same architecture shrunk so the whole pipeline runs in seconds on a CPU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

ARCHITECTURES = ("hybrid", "ann", "snn")
INPUTS = ("key+res", "all", "key", "res")


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines the network (not the training run).

    architecture: "hybrid" (ANN on key frames + SNN on residuals, fused), "ann" or "snn" only.
    inputs: what the branches see per segment of `stride` frames:
        "key+res" ANN <- key frame, SNN <- s-1 residuals (ReSpike);
        "all"     every raw frame (ANN per frame, SNN one frame per timestep);
        "key"     key frames only; "res" residual frames only (single-branch ablations).
    attention: hybrid only; False fuses the branches only at the classification head (E8).
    head_ann_scale: the pooled ANN features enter the head multiplied by this (1.0: the paper's network).
        It folds into the head's weights, so any value gives the same family of networks; in training
        it acts as an initial scale s and a learning rate s^2 for the head's ANN columns. Why it is
        there: a ResNet's pooled features (norm ~21 in the default run) swamp the SNN's (~5) at the
        head until the SNN learns, and the run spends its first ~50 steps above chance (README).
    """

    num_classes: int = 101
    architecture: str = "hybrid"
    inputs: str = "key+res"
    attention: bool = True
    frames: int = 16
    stride: int = 4
    resolution: int = 224
    ann: str = "resnet18"
    ann_weights: str | None = None
    snn_width: int = 64
    snn_blocks: tuple[int, int, int, int] = (2, 2, 2, 2)
    beta: float = 0.25
    threshold: float = 4.0 / 3.0
    surrogate_alpha: float = 2.0  # ATan sharpness in the authors' (spikingjelly) units, models/neuron.py
    fusion_pool: tuple[int, int, int, int] = (4, 2, 1, 1)
    attention_head_dim: int = 32
    lif_backend: str = "fused"
    snn_bn_stats: str = "per_timestep"  # SNN BatchNorm training statistics, models/batchnorm.py
    head_ann_scale: float = 1.0

    def __post_init__(self) -> None:
        for name in ("snn_blocks", "fusion_pool"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        _check_choice("architecture", self.architecture, ARCHITECTURES)
        _check_choice("inputs", self.inputs, INPUTS)
        _check_choice("lif_backend", self.lif_backend, ("fused", "snntorch"))
        _check_choice("snn_bn_stats", self.snn_bn_stats, ("per_timestep", "folded"))
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")
        if self.frames % self.stride != 0:
            raise ValueError(f"frames={self.frames} is not divisible by stride={self.stride}")
        if self.inputs in ("key+res", "res") and self.stride < 2:
            raise ValueError(f"inputs={self.inputs!r} needs stride >= 2 (a segment has s-1 residuals)")
        if self.architecture == "hybrid" and self.inputs not in ("key+res", "all"):
            raise ValueError(f"a hybrid model takes inputs 'key+res' or 'all', got {self.inputs!r}")
        if self.architecture != "hybrid" and self.inputs == "key+res":
            raise ValueError(f"inputs='key+res' needs architecture='hybrid', got {self.architecture!r}")
        if len(self.snn_blocks) != 4 or len(self.fusion_pool) != 4:
            raise ValueError("snn_blocks and fusion_pool need one entry per stage (4)")
        if self.snn_width < 1 or self.resolution < 32 or self.resolution % 32 != 0:
            raise ValueError(
                f"snn_width must be >= 1 and resolution a multiple of 32 (>= 32); "
                f"got snn_width={self.snn_width}, resolution={self.resolution}"
            )
        if not 0.0 <= self.beta < 1.0 or self.threshold <= 0:
            raise ValueError(f"need 0 <= beta < 1 and threshold > 0, got {self.beta}, {self.threshold}")
        _check_trainable(self)

    @property
    def has_ann(self) -> bool:
        return self.architecture in ("hybrid", "ann")

    @property
    def has_snn(self) -> bool:
        return self.architecture in ("hybrid", "snn")

    @property
    def segments(self) -> int:
        return self.frames // self.stride

    @property
    def snn_channels(self) -> tuple[int, int, int, int]:
        return tuple(self.snn_width * m for m in (1, 2, 4, 8))  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise KeyError(f"{source}: unknown model option(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def replace(self, **changes: Any) -> ModelConfig:
        return ModelConfig.from_dict({**self.to_dict(), **changes})


def _check_trainable(cfg: ModelConfig) -> None:
    """Refuse values that build a model which trains to NaN or crashes mid-run (a 0-block stage, a pool
    wider than its map, a non-finite neuron constant, a 0-wide attention head)."""
    import math

    for name in ("beta", "threshold", "surrogate_alpha", "head_ann_scale"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    for name in ("surrogate_alpha", "head_ann_scale"):
        if getattr(cfg, name) <= 0:
            raise ValueError(f"{name} must be > 0, got {getattr(cfg, name)}")
    if any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in cfg.snn_blocks):
        raise ValueError(f"snn_blocks entries must be ints >= 1, got {list(cfg.snn_blocks)}")
    if isinstance(cfg.attention_head_dim, bool) or not isinstance(cfg.attention_head_dim, int) or (
        cfg.attention_head_dim < 1
    ):
        raise ValueError(f"attention_head_dim must be an int >= 1, got {cfg.attention_head_dim!r}")
    maps = [cfg.resolution // (4 * 2**k) for k in range(4)]  # the stages' grid: 56/28/14/7 at 224
    for k, (pool, side) in enumerate(zip(cfg.fusion_pool, maps)):
        if isinstance(pool, bool) or not isinstance(pool, int) or not 1 <= pool <= side:
            raise ValueError(
                f"fusion_pool[{k}] must be an int in [1, {side}] (stage {k + 1} map is {side}x{side} at "
                f"resolution {cfg.resolution}), got {list(cfg.fusion_pool)}"
            )


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def small(**changes: Any) -> ModelConfig:
    """The reference architecture shrunk for CPU: 64x64 clips of 8 frames, 16-channel SNN stem."""
    base = dict(num_classes=12, frames=8, stride=4, resolution=64, snn_width=16, fusion_pool=(2, 1, 1, 1))
    return ModelConfig.from_dict({**base, **changes})


VARIANTS: dict[str, dict[str, Any]] = {
    # The paper's ablation (Table 4): E1-E9 as configurations of the same code.
    "E1": dict(architecture="ann", inputs="all"),
    "E2": dict(architecture="snn", inputs="all"),
    "E3": dict(architecture="hybrid", inputs="all", attention=True),
    "E4": dict(architecture="ann", inputs="key"),
    "E5": dict(architecture="ann", inputs="res"),
    "E6": dict(architecture="snn", inputs="res"),
    "E7": dict(architecture="snn", inputs="key"),
    "E8": dict(architecture="hybrid", inputs="key+res", attention=False),
    "E9": dict(architecture="hybrid", inputs="key+res", attention=True),
}
