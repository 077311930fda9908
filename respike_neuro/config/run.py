"""Run configuration: the data, train and whole-run sections of a training run, and their YAML loading.

Precedence: dataclass defaults < YAML file < `variant` (E1-E9 model overrides) < overrides (the CLI's
`--set section.key=value` and `--section.key value`, see respike_neuro.config.cli). Values are
checked strictly: unknown keys and wrongly-typed or out-of-range values raise ConfigError naming the
key and where it came from (the file, the command line, or both).
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from respike_neuro.cli import UsageError, check_device
from respike_neuro.config.model import VARIANTS, ModelConfig

DEFAULT_CONFIG = Path(__file__).parent.parent / "configs" / "default.yaml"
SECTIONS = ("model", "data", "train", "variant")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
ALLOCATORS = ("auto", "tcmalloc", "glibc")


class ConfigError(UsageError):
    """A bad config value or key; the message names the key and where it came from."""


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class DataConfig:
    """Where clips come from. Frames and resolution are the model's (model.frames/resolution)."""

    dataset: str = field(
        default="synthetic",
        metadata=_help(
            "dataset name: 'synthetic' (built in, generated on the fly) or a registry name "
            "(ucf101, hmdb51, kinetics400)"
        ),
    )
    root: str | None = field(default=None, metadata=_help("dataset root directory (real datasets)"))
    fold: int = field(default=1, metadata=_help("official split fold (UCF-101/HMDB-51: 1-3)"))
    train_clips: int = field(default=480, metadata=_help("synthetic: clips in the train split"))
    val_clips: int = field(default=120, metadata=_help("synthetic: clips in the validation split"))
    test_clips: int = field(default=240, metadata=_help("synthetic: clips in the test split (0: no test)"))
    clips_per_video: int = field(
        default=1,
        metadata=_help(
            "real datasets: clips sampled per video for validation/test (video accuracy averages them)"
        ),
    )
    frames: int | None = field(
        default=None,
        metadata=_help("clip length; null mirrors model.frames (if set, it must equal model.frames)"),
    )
    resolution: int | None = field(
        default=None,
        metadata=_help("frame side; null mirrors model.resolution (if set, it must equal model.resolution)"),
    )
    workers: int = field(default=0, metadata=_help("DataLoader worker processes per rank"))
    cache: bool = field(
        default=False,
        metadata=_help(
            "render/decode train and val clips once and keep them in memory (small datasets only)"
        ),
    )
    seed: int = field(default=0, metadata=_help("synthetic: generator seed of the dataset"))
    options: dict = field(
        default_factory=dict,
        metadata=_help("extra keyword arguments for the dataset constructor (e.g. {distractors: 2})"),
    )

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> Any:
        """Strict: unknown keys and wrongly-typed values raise ConfigError naming key and source."""
        return _from_dict(cls, values, "data", source)

    def replace(self, **changes: Any) -> Any:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation run."""

    epochs: int = field(default=10, metadata=_help("training epochs"))
    batch_size: int = field(
        default=16, metadata=_help("GLOBAL batch per optimizer step (split over ranks and accum_steps)")
    )
    accum_steps: int = field(
        default=1,
        metadata=_help("gradient accumulation: micro-batches per optimizer step (interleaved split)"),
    )
    eval_batch_size: int = field(default=32, metadata=_help("per-rank batch for validation/test"))
    lr: float = field(
        default=0.05, metadata=_help("peak learning rate (authors: 1e-4 with ImageNet weights)")
    )
    momentum: float = field(default=0.9, metadata=_help("SGD momentum"))
    weight_decay: float = field(default=1e-4, metadata=_help("SGD weight decay"))
    nesterov: bool = field(default=False, metadata=_help("Nesterov momentum"))
    schedule: str = field(default="cosine", metadata=_help("LR schedule per step: cosine or constant"))
    warmup_epochs: float = field(
        default=0.0, metadata=_help("linear LR warmup length in epochs (may be fractional)")
    )
    min_lr: float = field(default=0.0, metadata=_help("final LR of the cosine schedule"))
    grad_clip: float = field(default=0.0, metadata=_help("clip gradient global L2 norm to this (0: off)"))
    amp: str = field(
        default="auto",
        metadata=_help(
            "mixed precision: auto (fp16 + GradScaler on CUDA; on a CPU bf16 only where it has native "
            "bf16: avx512_bf16/amx_bf16/ARM bf16, else fp32), off, fp16, bf16"
        ),
    )
    memory_format: str = field(
        default="auto",
        metadata=_help(
            "layout of the conv weights and activations: auto (channels_last on an x86-64 CPU, where "
            "oneDNN's convs run faster in it; contiguous elsewhere), channels_last, contiguous"
        ),
    )
    seed: int = field(default=0, metadata=_help("seed of python/numpy/torch RNGs, model init and data order"))
    device: str = field(default="auto", metadata=_help("auto (CUDA if present), cpu, cuda, cuda:N"))
    threads: int | None = field(default=None, metadata=_help("torch CPU threads (null: torch's default)"))
    out: str = field(default="runs/default", metadata=_help("output directory"))
    resume: str = field(
        default="auto",
        metadata=_help("auto (continue from <out>/last.pt if present), never, or a checkpoint path"),
    )
    checkpoint_every_steps: int = field(
        default=0, metadata=_help("also write last.pt every N optimizer steps (0: only at epoch ends)")
    )
    log_every_steps: int = field(
        default=10, metadata=_help("write a 'step' line to metrics.jsonl every N steps")
    )
    eval_every: int = field(default=1, metadata=_help("validate every N epochs (and always after the last)"))
    max_steps: int = field(
        default=0,
        metadata=_help(
            "stop after this many optimizer steps in all, saving last.pt (0: no limit; resume continues)"
        ),
    )
    sync_bn: bool = field(
        default=False, metadata=_help("DDP: convert BatchNorm to SyncBatchNorm (CUDA only)")
    )
    find_unused_parameters: bool = field(
        default=False,
        metadata=_help("DDP: find_unused_parameters (only if a variant leaves parameters without gradient)"),
    )
    checkpoint_activations: bool = field(
        default=False, metadata=_help("recompute blocks in backward to save activation memory (~30% slower)")
    )
    lean_memory: bool = field(
        default=True,
        metadata=_help(
            "the same step in less memory: spike inputs kept as 1 bit, GEGLU and BN+LIF recomputed in "
            "backward, SGD applied inside backward (no clip/accum/DDP/fp16), C heap trimmed before backward"
        ),
    )
    heap_release_mb: float = field(
        default=0.0,
        metadata=_help(
            "CPU: also release the C heap's free memory at each stage's edges when more than this many MB "
            "of it is resident (0: off; 64 on tcmalloc: under half the authors' peak at the reference "
            "config, in less than their time, README)"
        ),
    )
    allocator: str = field(
        default="auto",
        metadata=_help(
            "CPU, Linux: the C heap of the training process: auto (tcmalloc on an x86-64 CPU where the "
            "system has it: a lower peak and faster steps, README; else glibc), tcmalloc (an error "
            "without it), glibc"
        ),
    )
    lean_heap: bool = field(
        default=False,
        metadata=_help(
            "CPU, Linux: restart the command with glibc's blocks >= 2 MB mapped on their own in huge pages, "
            "so freed activations leave the process at once: a lower peak, slower steps (README)"
        ),
    )
    progress: bool = field(default=True, metadata=_help("tqdm progress bars"))

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> Any:
        """Strict: unknown keys and wrongly-typed values raise ConfigError naming key and source."""
        return _from_dict(cls, values, "train", source)

    def replace(self, **changes: Any) -> Any:
        return dataclasses.replace(self, **changes)


MODEL_HELP = {
    "num_classes": "number of classes (must match the dataset)",
    "architecture": "hybrid (ANN+SNN), ann or snn",
    "inputs": "key+res (ReSpike), all, key or res",
    "attention": "hybrid: cross-attention fusion at every stage (false: fuse only at the head)",
    "frames": "frames per clip T",
    "stride": "segment length s: 1 key frame + s-1 residual frames",
    "resolution": "frame side in pixels (multiple of 32)",
    "ann": "ANN backbone: resnet18/34/50/101/152",
    "ann_weights": "ANN init: null (random), 'imagenet' (from the torch hub cache) or a file path",
    "snn_width": "channels of the SNN's first stage (doubles per stage)",
    "snn_blocks": "residual blocks per SNN stage, 4 entries",
    "beta": "LIF membrane decay (v <- beta v + I)",
    "threshold": "LIF firing threshold",
    "surrogate_alpha": "ATan surrogate sharpness in the authors' units (on the membrane scaled by 1-beta)",
    "fusion_pool": "per-stage average-pool factor before cross-attention, 4 entries",
    "attention_head_dim": "cross-attention head dimension",
    "lif_backend": "fused (this repo's LIF) or snntorch",
    "snn_bn_stats": "SNN BatchNorm training statistics: per_timestep (the authors') or folded over time",
}


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    variant: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.to_dict(),
            "data": _plain(dataclasses.asdict(self.data)),
            "train": dataclasses.asdict(self.train),
            "variant": self.variant,
        }


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# -- config parsing -----------------------------------------------------------------------------


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    """Check/convert `value` to the field type `hint`, or raise ConfigError naming key and source."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key, source)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0])
    bad = ConfigError(f"{source}: {key} must be {_type_name(hint)}, got {value!r}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if hint is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if hint is str:
        if isinstance(value, str):
            return value
        raise bad
    if origin is tuple or hint is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad
        if args and args[-1] is not Ellipsis and len(args) != len(value):
            raise ConfigError(f"{source}: {key} needs {len(args)} entries, got {value!r}")
        elem = args[0] if args else Any
        return tuple(value if elem is Any else (_coerce(v, elem, key, source) for v in value))
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise bad
        return dict(value)
    return value


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint)).replace("typing.", "")


def _coerced_kwargs(cls: type, values: dict[str, Any], section: str, source: str) -> dict[str, Any]:
    """`values` checked against the fields of `cls` (unknown keys named) and coerced to their types."""
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {[f'{section}.{k}' for k in unknown]}; known {section} keys: {known}"
        )
    return {k: _coerce(v, hints[k], f"{section}.{k}", source) for k, v in values.items()}


def _from_dict(cls: type, values: Any, section: str, source: str) -> Any:
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: section '{section}' must be a mapping, got {type(values).__name__}")
    kwargs = _coerced_kwargs(cls, values, section, source)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{source}: {section}: {err}") from None


def _model_from_dict(values: dict[str, Any], source: str) -> ModelConfig:
    kwargs = _coerced_kwargs(ModelConfig, values, "model", source)
    try:
        return ModelConfig.from_dict(kwargs, source=source)
    except (ValueError, TypeError, KeyError) as err:
        raise ConfigError(f"{source}: model: {err.args[0] if err.args else err}") from None


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not a text (YAML) file") from None
    except OSError as err:
        raise ConfigError(f"config file {path} cannot be read: {err.strerror or err}") from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must be a mapping of sections {list(SECTIONS)}")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}; known sections: {list(SECTIONS)}")
    return raw


def build_run_config(
    file_values: dict[str, Any],
    overrides: dict[str, Any] | None = None,
    *,
    source: str = "config",
    override_source: str = "command line",
) -> RunConfig:
    """Sections from a YAML mapping + dotted overrides {"train.epochs": 3} -> validated RunConfig."""
    for s in ("model", "data", "train"):
        value = file_values.get(s)
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"{source}: section '{s}' must be a mapping, got {value!r}")
    sections: dict[str, Any] = {s: dict(file_values.get(s) or {}) for s in ("model", "data", "train")}
    variant = file_values.get("variant")
    model_cli: dict[str, Any] = {}
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        if dotted == "variant":
            variant = value
        elif section in ("data", "train") and key:
            sections[section][key] = value
        elif section == "model" and key:
            model_cli[key] = value
        else:
            raise ConfigError(
                f"{override_source}: unknown key {dotted!r}; use section.key with section in "
                f"{list(SECTIONS[:3])}, or 'variant'"
            )
    if variant is not None:
        if variant not in VARIANTS:
            raise ConfigError(f"{source}: unknown variant {variant!r}; choose from {sorted(VARIANTS)}")
        sections["model"].update(VARIANTS[variant])
    # CLI model keys are checked against the model's own fields first, so the message names the CLI
    unknown = sorted(set(model_cli) - {f.name for f in dataclasses.fields(ModelConfig)})
    if unknown:
        raise ConfigError(f"{override_source}: unknown key(s) {[f'model.{k}' for k in unknown]}")
    sections["model"].update(model_cli)
    src = source if not overrides else f"{source} + {override_source}"
    model = _model_from_dict(sections["model"], src)
    data = _from_dict(DataConfig, sections["data"], "data", src)
    train = _from_dict(TrainConfig, sections["train"], "train", src)
    for name in ("frames", "resolution"):
        value = getattr(data, name)
        if value is not None and value != getattr(model, name):
            raise ConfigError(
                f"{src}: data.{name}={value} differs from model.{name}={getattr(model, name)}; "
                f"leave data.{name} null to mirror the model"
            )
    _check_train(train, src)
    _check_data(data, src)
    return RunConfig(model=model, data=data, train=train, variant=variant)


def _check_data(d: DataConfig, src: str) -> None:
    """Splits that exist (a negative or empty split only failed after training)."""
    checks = [
        (d.train_clips >= 1, f"data.train_clips must be >= 1, got {d.train_clips}"),
        (d.val_clips >= 1, f"data.val_clips must be >= 1, got {d.val_clips}"),
        (d.test_clips >= 0, f"data.test_clips must be >= 0 (0: no test), got {d.test_clips}"),
        (d.clips_per_video >= 1, f"data.clips_per_video must be >= 1, got {d.clips_per_video}"),
        (d.workers >= 0, f"data.workers must be >= 0, got {d.workers}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"{src}: {message}")


def _check_train(t: TrainConfig, src: str) -> None:
    for name in ("lr", "momentum", "weight_decay", "warmup_epochs", "min_lr", "grad_clip", "heap_release_mb"):
        if not math.isfinite(getattr(t, name)):
            raise ConfigError(f"{src}: train.{name} must be a finite number, got {getattr(t, name)}")
    try:
        check_device(t.device, option="train.device")
    except UsageError as err:
        raise ConfigError(f"{src}: {err}") from None
    checks = [
        (t.epochs >= 1, f"train.epochs must be >= 1, got {t.epochs}"),
        (t.batch_size >= 1, f"train.batch_size must be >= 1, got {t.batch_size}"),
        (t.accum_steps >= 1, f"train.accum_steps must be >= 1, got {t.accum_steps}"),
        (t.eval_batch_size >= 1, f"train.eval_batch_size must be >= 1, got {t.eval_batch_size}"),
        (t.lr > 0, f"train.lr must be > 0, got {t.lr}"),
        (0 <= t.min_lr <= t.lr, f"train.min_lr must be in [0, train.lr={t.lr}], got {t.min_lr}"),
        (0 <= t.momentum < 1, f"train.momentum must be in [0, 1), got {t.momentum}"),
        (t.weight_decay >= 0, f"train.weight_decay must be >= 0, got {t.weight_decay}"),
        (
            t.schedule in ("cosine", "constant"),
            f"train.schedule must be cosine or constant, got {t.schedule!r}",
        ),
        (t.warmup_epochs >= 0, f"train.warmup_epochs must be >= 0, got {t.warmup_epochs}"),
        (
            t.amp in ("auto", "off", "fp16", "bf16"),
            f"train.amp must be auto, off, fp16 or bf16, got {t.amp!r}",
        ),
        (
            t.memory_format in MEMORY_FORMATS,
            f"train.memory_format must be auto, channels_last or contiguous, got {t.memory_format!r}",
        ),
        (
            t.allocator in ALLOCATORS,
            f"train.allocator must be auto, tcmalloc or glibc, got {t.allocator!r}",
        ),
        (
            not (t.lean_heap and t.allocator == "tcmalloc"),
            "train.lean_heap is glibc's heap: it needs train.allocator glibc or auto, not tcmalloc",
        ),
        (t.grad_clip >= 0, f"train.grad_clip must be >= 0, got {t.grad_clip}"),
        (t.heap_release_mb >= 0, f"train.heap_release_mb must be >= 0, got {t.heap_release_mb}"),
        (t.threads is None or t.threads >= 1, f"train.threads must be >= 1, got {t.threads}"),
        (
            min(t.checkpoint_every_steps, t.log_every_steps, t.max_steps) >= 0,
            "train.checkpoint_every_steps, log_every_steps and max_steps must be >= 0",
        ),
        (t.eval_every >= 1, f"train.eval_every must be >= 1, got {t.eval_every}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"{src}: {message}")

