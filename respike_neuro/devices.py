"""Device, precision and seeding of a torch run (train, evaluate): one place that reads the config's names."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import numpy as np
import torch

from respike_neuro.config import ConfigError

if TYPE_CHECKING:
    from respike_neuro.distributed import DistInfo


def seed_worker(worker_id: int) -> None:
    """Seed numpy/python in each DataLoader worker from the torch seed DataLoader gave it."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str, info: DistInfo | None = None) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device: unknown device {name!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device={name!r} but CUDA is not available")
        if info is not None and info.enabled and device.index is None:
            device = torch.device("cuda", info.local_rank)
    return device


def amp_dtype_for(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "auto":
        return torch.float16 if device.type == "cuda" else None
    return {"off": None, "fp16": torch.float16, "bf16": torch.bfloat16}[amp]
