"""Training checkpoints: one plain dict, written atomically, read with `weights_only=True`.

A checkpoint never pickles code: configs are plain dicts, RNG states are tensors/lists, so
`torch.load(path, weights_only=True)` (no arbitrary code runs) can read every one. Layout
(FORMAT_VERSION 1):

    format_version  int
    model_config    ModelConfig.to_dict()
    train_config    the whole run config (model/data/train/variant sections), plain dict
    model           state dict of the bare model (never the DDP wrapper: no "module." prefix)
    optimizer, scheduler, scaler   their state dicts (scaler may be {} when AMP is off)
    epoch           epochs fully completed; step = optimizer steps taken
    epoch_step      steps into the epoch `epoch` (0 at an epoch boundary)
    best_metric     best validation accuracy so far (or None)
    rng             python / numpy / torch (/ cuda) generator states
    class_names     list of str

Writes go through respike_neuro.fileio.atomic_write (temporary in the same directory, free space
checked, fsync, os.replace): a crash mid-write never leaves a half-written last.pt behind, and the
temporary of a killed save is removed by the next save of the same file.
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "model_config", "model", "epoch", "step", "class_names")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, with the reason and the path in the message."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Atomically write `state` (must already contain REQUIRED_KEYS) to `path`."""
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks required key(s) {missing}")
    from respike_neuro.fileio import atomic_write

    # size: the tensors plus ~1 MB of pickle framing, checked against free space before writing
    need = sum(_tensor_bytes(v) for v in state.values()) + (1 << 20)
    return atomic_write(path, lambda tmp: torch.save(state, tmp), need_bytes=need)


def _tensor_bytes(value: Any) -> int:
    """Bytes of the tensors inside a (nested) state dict: the checkpoint's size, near enough."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def train_config_of(state: dict[str, Any], path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's recorded run config ({} when absent); CheckpointError when it is not a mapping
    (the tools read dataset options from it)."""
    value = state.get("train_config")
    if value is None:
        return {}
    if not isinstance(value, dict) or not isinstance(value.get("data", {}) or {}, dict):
        got = type(value).__name__ if not isinstance(value, dict) else "data=" + type(value["data"]).__name__
        raise CheckpointError(
            f"checkpoint {path}: train_config must be a mapping with a 'data' mapping, got {got}"
        )
    return value


def class_names_of(state: dict[str, Any], path: str | os.PathLike, num_classes: int) -> list[str]:
    """The checkpoint's class names as strings, one per class; CheckpointError when unusable."""
    names = state.get("class_names")
    if not isinstance(names, (list, tuple)) or len(names) != num_classes:
        shown = f"{len(names)} entries" if isinstance(names, (list, tuple)) else type(names).__name__
        raise CheckpointError(
            f"checkpoint {path}: class_names must be a list of {num_classes} names, got {shown}"
        )
    return [str(n) for n in names]


AUTHORS_PREFIXES = ("ann_layer0.", "snn_backbone.")


def is_authors_state_dict(state: Any) -> bool:
    """A bare state_dict as the authors' ReSpike scripts save it (possibly with DataParallel's prefix)."""
    return (
        isinstance(state, dict)
        and bool(state)
        and all(isinstance(k, str) for k in state)
        and any(k.removeprefix("module.").startswith(AUTHORS_PREFIXES) for k in state)
    )


def read_torch_file(path: str | os.PathLike, *, what: str = "checkpoint", map_location: Any = "cpu") -> Any:
    """torch.load(weights_only=True) whose every failure is a CheckpointError naming the file and why."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{what} {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{what} {path} is not a file")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; its directory is at the end
        raise CheckpointError(
            f"{what} {path} is not a readable torch file (truncated or corrupt? "
            f"{path.stat().st_size} bytes, no zip directory)"
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{what} {path} holds objects that weights_only loading refuses (pickled code?): "
            f"{str(err).splitlines()[0]}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(
            f"{what} {path} is not a readable torch file (truncated or corrupt?): "
            f"{str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from None


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and validate a checkpoint; every failure is a CheckpointError naming the file and why."""
    path = Path(path)
    state = read_torch_file(path, map_location=map_location)
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a checkpoint dict")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        if is_authors_state_dict(state):
            raise CheckpointError(
                f"{path} is a state_dict saved by the authors' ReSpike code; convert it first: "
                f"python -m respike_neuro.import_authors {path} -o OUT.pt"
            )
        raise CheckpointError(
            f"checkpoint {path} lacks key(s) {missing} (not written by respike_neuro.train?)"
        )
    version = state["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format_version {version!r}; this code reads up to {FORMAT_VERSION}"
        )
    if not isinstance(state["model"], dict) or not isinstance(state["model_config"], dict):
        raise CheckpointError(f"checkpoint {path}: 'model' and 'model_config' must be dicts")
    return state


def check_state_dict(
    model: nn.Module, weights: dict[str, torch.Tensor], *, source: str = "checkpoint"
) -> None:
    """Raise CheckpointError naming every missing, unexpected or wrongly-shaped key."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    shapes = sorted(
        f"{k}: checkpoint {tuple(weights[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(weights)
        if tuple(weights[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or shapes:
        parts = []
        for name, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if keys:
                shown = ", ".join(keys[:6]) + (f", ... ({len(keys)} in all)" if len(keys) > 6 else "")
                parts.append(f"{name}: {shown}")
        raise CheckpointError(f"{source} does not fit the model architecture; " + "; ".join(parts))


def load_model(path: str | os.PathLike, *, map_location: str | torch.device = "cpu"):
    """Checkpoint -> (model in eval mode, checkpoint dict). The architecture comes from the file."""
    from respike_neuro.config import ModelConfig
    from respike_neuro.models.hybrid import build_model

    state = load_checkpoint(path, map_location=map_location)
    try:
        cfg = ModelConfig.from_dict(state["model_config"], source=f"checkpoint {path}")
    except (KeyError, ValueError, TypeError) as err:
        raise CheckpointError(f"checkpoint {path}: invalid model_config: {err}") from None
    model = build_model(cfg.replace(ann_weights=None))  # the file carries every weight: no ImageNet load
    check_state_dict(model, state["model"], source=f"checkpoint {path}")
    model.load_state_dict(state["model"])
    return model.eval(), state


# -- RNG state --------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) generator states in weights_only-loadable types."""
    py = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of rng_state()."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
