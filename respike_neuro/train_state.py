"""The state of a training run: `Run` (what run() wires together: devices, data, model, optimisation)
and `TrainState` (what changes and what last.pt restores), with the checkpoint written from them and the
resume that reads it back (respike_neuro.checkpoint holds the file format and its atomic writes)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from respike_neuro.checkpoint import (
    FORMAT_VERSION,
    check_state_dict,
    load_checkpoint,
    rng_state,
    set_rng_state,
)
from respike_neuro.config import ConfigError, RunConfig
from respike_neuro.distributed import DistInfo
from respike_neuro.metrics_log import truncate_metrics


@dataclass
class TrainState:
    """What changes while training, and what last.pt restores: counters, the best validation so far, and
    the running loss sums of the current epoch (saved mid-epoch so a resumed epoch's line covers it all)."""

    epoch: int = 0
    step: int = 0
    epoch_step: int = 0
    best: float | None = None
    best_epoch: int | None = None
    resumed_sums: dict[str, Any] | None = None  # the interrupted epoch's running loss sums
    resumed_at: int | None = None  # step at which a mid-epoch resume started
    sums: np.ndarray = field(default_factory=lambda: np.zeros(3))  # loss * n, correct, n (rank, epoch)
    window: np.ndarray = field(default_factory=lambda: np.zeros(3))  # the same since the last step line
    epoch_seconds_before: float = 0.0  # of an epoch interrupted and resumed: the time spent before
    run_start: float = 0.0
    epoch_start: float = 0.0
    window_start: float = 0.0


@dataclass
class Run:
    """Everything run() wires together: the distributed setup, data, model and optimisation."""

    cfg: RunConfig
    info: DistInfo
    device: torch.device
    out: Path
    per_rank: int
    progress: bool
    train_ds: Any = None
    val_ds: Any = None
    class_names: list[str] = field(default_factory=list)
    steps_per_epoch: int = 0
    model: Any = None  # DDP-wrapped when distributed
    bare: Any = None  # the model itself (state_dict, evaluation)
    optimizer: Any = None
    scheduler: Any = None
    scaler: Any = None
    amp_dtype: torch.dtype | None = None
    sampler: Any = None
    loader_gen: Any = None
    loader: Any = None
    log: Any = None

    @property
    def eval_kwargs(self) -> dict[str, Any]:
        return dict(
            device=self.device,
            class_names=self.class_names,
            batch_size=self.cfg.train.eval_batch_size,
            workers=self.cfg.data.workers,
            amp_dtype=self.amp_dtype,
            info=self.info,
            progress=self.progress,
        )


def resume_from(r: Run, st: TrainState, path: Path) -> None:
    """Model, optimizer, scheduler, scaler, RNG states and counters from checkpoint `path`."""
    ckpt = load_checkpoint(path)
    model_config = r.cfg.model.to_dict()
    if ckpt["model_config"] != model_config:
        diff = sorted(
            k
            for k in set(ckpt["model_config"]) | set(model_config)
            if ckpt["model_config"].get(k) != model_config.get(k)
        )
        raise ConfigError(
            f"cannot resume from {path}: its model config differs in {diff} "
            f"(use --resume never or another --out)"
        )
    check_state_dict(r.bare, ckpt["model"], source=f"checkpoint {path}")
    r.bare.load_state_dict(ckpt["model"])
    r.optimizer.load_state_dict(ckpt["optimizer"])
    r.scheduler.load_state_dict(ckpt["scheduler"])
    if ckpt.get("scaler"):
        r.scaler.load_state_dict(ckpt["scaler"])
    st.epoch, st.step, st.epoch_step = ckpt["epoch"], ckpt["step"], ckpt.get("epoch_step", 0)
    st.best, st.best_epoch = ckpt.get("best_metric"), ckpt.get("best_epoch")
    set_rng_state(ckpt["rng"])
    if st.epoch_step:
        st.resumed_at = st.step
        sums_state = ckpt.get("metric_sums")
        if isinstance(sums_state, dict) and not r.info.enabled:  # per-rank sums: one process only
            st.resumed_sums = sums_state
    if r.info.is_main:
        truncate_metrics(r.out / "metrics.jsonl", step=st.step, epoch=st.epoch)
        print(f"resumed from {path}: epoch {st.epoch}, step {st.step}", file=sys.stderr)


def checkpoint_state(r: Run, st: TrainState, epoch: int, epoch_step: int) -> dict[str, Any]:
    """What last.pt / best.pt hold (respike_neuro.checkpoint): at an epoch's end, or mid-epoch with the
    epoch's running sums."""
    extra: dict[str, Any] = {}
    if epoch_step:  # mid-epoch: what the epoch's metrics line needs after a resume
        extra["metric_sums"] = {
            "epoch": st.sums.tolist(),
            "window": st.window.tolist(),
            "seconds": st.epoch_seconds_before + time.perf_counter() - st.epoch_start,
        }
    return dict(
        **extra,
        format_version=FORMAT_VERSION,
        model_config=r.cfg.model.to_dict(),
        train_config=r.cfg.to_dict(),
        model=r.bare.state_dict(),
        optimizer=r.optimizer.state_dict(),
        scheduler=r.scheduler.state_dict(),
        scaler=r.scaler.state_dict(),
        epoch=epoch,
        step=st.step,
        epoch_step=epoch_step,
        best_metric=st.best,
        best_epoch=st.best_epoch,
        rng=rng_state(),
        class_names=r.class_names,
    )
