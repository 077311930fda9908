"""Train ReSpike (or an ablation variant) from a YAML config; single process or DDP under torchrun.

    python -m respike_neuro.train --config respike_neuro/configs/default.yaml --out runs/default
    python -m respike_neuro.train --config ... --set train.epochs=3 model.stride=2 --variant E8
    torchrun --nproc_per_node 2 -m respike_neuro.train --config ...

Config precedence: dataclass defaults < YAML file < `variant` (E1-E9 model overrides) < CLI
(`--set section.key=value` and the generated `--section.key value` flags). Values given on the
CLI are parsed as YAML scalars/lists. Unknown keys anywhere are errors naming key and source.

Recipe (the authors'): SGD momentum 0.9, weight decay 1e-4, cross-entropy, cosine LR decayed per
step, optional linear warmup. `train.batch_size` is the GLOBAL batch: each of W ranks processes
batch_size / (W * accum_steps) clips per micro-step. With accum_steps = A a global batch is split
interleaved (micro-batch m = batch[m::A]), which is exactly the split DDP makes across ranks; so
one process with A = W reproduces a W-rank run including its per-rank BatchNorm statistics.

Outputs in `train.out`: config.yaml (resolved), metrics.jsonl (one JSON object per line: kind
"step" every log_every_steps, "epoch" per epoch, "test" once), last.pt (every epoch, and every
checkpoint_every_steps), best.pt (best validation video top-1), test_results.json and
confusion_test.png (the test split, evaluated once, with best.pt).

Resume: `train.resume: auto` (default) continues from <out>/last.pt when it exists, a path
resumes from that file, `never` starts afresh (overwriting). Model, optimizer, scheduler, scaler,
RNG states, epoch and step are restored, so an interrupted run ends with the same weights as an
uninterrupted one (mid-epoch resumes skip the batches already seen; exact for datasets whose
items do not draw random numbers in worker processes, or with data.workers = 0).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch.utils.data import DataLoader
from tqdm import tqdm

from respike_neuro.allocator import (
    allocator_for,
    heap_in_use,
    lean_heap_unavailable,
    release_free_heap,
    release_heap_at,
    restart_with_lean_heap,
    restart_with_tcmalloc,
)
from respike_neuro.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from respike_neuro.cli import ArgumentParser, check_output_dir, guarded
from respike_neuro.config import (  # noqa: F401  (callers wire these with run)
    ConfigError,
    RunConfig,
    add_config_arguments,
    build_run_config,
    config_from_args,
    read_yaml,
)
from respike_neuro.data.registry import InMemory, build_split
from respike_neuro.devices import (
    amp_dtype_for,
    memory_format_for,
    resolve_device,
    seed_everything,
    seed_worker,
)
from respike_neuro.distributed import (
    TrainSampler,
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    init_distributed,
)
from respike_neuro.evaluate import evaluate_dataset, plot_confusion, skipped_count, summary_line
from respike_neuro.fileio import write_text_atomic
from respike_neuro.metrics_log import JsonlLog
from respike_neuro.models.memory import plain_backward
from respike_neuro.run_files import StopRequest, check_ann_weights, resume_path, set_aside_earlier_results
from respike_neuro.sgd_in_backward import SGDInBackward, fits_in_backward
from respike_neuro.train_state import Run, TrainState, checkpoint_state, resume_from


def lr_factor(step: int, *, total: int, warmup: int, schedule: str, min_ratio: float) -> float:
    """LR multiplier at optimizer step `step`: linear warmup, then cosine to min_ratio (or constant)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def run(cfg: RunConfig, *, on_epoch_end: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train, validate every epoch, keep best.pt, test once with it. Returns a summary dict."""
    r, st = setup_run(cfg)
    t = cfg.train
    stopped = False
    st.run_start = st.epoch_start = time.perf_counter()
    stop = StopRequest(enabled=r.info.is_main and not r.info.enabled)
    try:
        while st.epoch < t.epochs and not stopped:
            with _heap_release(r):
                stopped = train_one_epoch(r, st, stop)
            if st.epoch_step < r.steps_per_epoch:  # stopped mid-epoch by max_steps
                break
            record = end_epoch(r, st)
            if on_epoch_end is not None:
                on_epoch_end(record)
            if t.max_steps and st.step >= t.max_steps:
                stopped = True
            if stop.requested:
                stop.interrupt(f"interrupted after epoch {st.epoch}: saved {r.out / 'last.pt'}")
    finally:
        stop.restore()
    summary: dict[str, Any] = dict(
        out=str(r.out),
        epoch=st.epoch,
        step=st.step,
        best_val_acc=st.best,
        best_epoch=st.best_epoch,
        best=str(r.out / "best.pt"),
        last=str(r.out / "last.pt"),
        metrics=str(r.out / "metrics.jsonl"),
        finished=st.epoch >= t.epochs,
    )
    if st.epoch >= t.epochs and cfg.data.test_clips != 0:
        summary["test"] = _final_test(r)
    return summary


# -- setup --------------------------------------------------------------------------------------


def setup_run(cfg: RunConfig) -> tuple[Run, TrainState]:
    """Devices, output directory, data, model, optimizer, a resumed state and the train loader, in the
    order that fixes the random streams (an interrupted and resumed run ends with the same weights)."""
    t = cfg.train
    probe_device = resolve_device(t.device)
    info = init_distributed(probe_device.type)
    device = resolve_device(t.device, info)
    if t.threads:
        torch.set_num_threads(t.threads)
    out = Path(t.out)
    check_output_dir(out, "train.out")  # before any work: an unwritable --out used to fail after training
    check_ann_weights(cfg.model)
    resume = resume_path(t, out)
    if resume is None:
        set_aside_earlier_results(out, t, info.is_main)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    barrier(info)
    per_rank, rem = divmod(t.batch_size, info.world_size * t.accum_steps)
    if rem or per_rank < 1:
        raise ConfigError(
            f"train.batch_size={t.batch_size} must be a positive multiple of world size "
            f"{info.world_size} x accum_steps {t.accum_steps}"
        )
    r = Run(cfg, info, device, out, per_rank, progress=t.progress and info.is_main)
    seed_everything(t.seed)
    _build_data(r)
    _build_model(r)
    st = TrainState()
    if resume is not None:
        resume_from(r, st, resume)
    if info.enabled:
        r.model = torch.nn.parallel.DistributedDataParallel(
            r.bare,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=t.find_unused_parameters,
        )
    r.sampler = TrainSampler(r.train_ds, info, seed=t.seed)
    r.loader_gen = torch.Generator()
    r.loader = DataLoader(
        r.train_ds,
        batch_size=per_rank * t.accum_steps,
        sampler=r.sampler,
        drop_last=True,
        num_workers=cfg.data.workers,
        worker_init_fn=seed_worker,
        generator=r.loader_gen,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    r.log = JsonlLog(out / "metrics.jsonl", info.is_main)
    if info.is_main:
        write_text_atomic(out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return r, st


def _build_data(r: Run) -> None:
    """Train and validation splits (kept in memory with data.cache), class names, steps per epoch."""
    cfg, t = r.cfg, r.cfg.train
    r.train_ds = build_split(cfg.data, cfg.model, "train")
    r.val_ds = build_split(cfg.data, cfg.model, "val")
    if cfg.data.cache:
        r.train_ds = InMemory(r.train_ds, desc="cache train", progress=r.progress)
        r.val_ds = InMemory(r.val_ds, desc="cache val", progress=r.progress)
    class_names = list(getattr(r.train_ds, "class_names", None) or range(cfg.model.num_classes))
    r.class_names = [str(c) for c in class_names]
    num_classes = getattr(r.train_ds, "num_classes", len(r.class_names))
    if num_classes != cfg.model.num_classes:
        raise ConfigError(
            f"model.num_classes={cfg.model.num_classes} but dataset {cfg.data.dataset!r} has "
            f"{num_classes} classes; set model.num_classes={num_classes}"
        )
    r.steps_per_epoch = len(r.train_ds) // (r.per_rank * t.accum_steps * r.info.world_size)
    if r.steps_per_epoch < 1:
        raise ConfigError(
            f"train split has {len(r.train_ds)} clips, fewer than one global batch of {t.batch_size}"
        )


def _build_model(r: Run) -> None:
    """The model on its device, SGD, the per-step LR schedule and the fp16 GradScaler."""
    from respike_neuro.models.hybrid import build_model

    cfg, t = r.cfg, r.cfg.train
    model = build_model(cfg.model)
    model.checkpoint_activations = t.checkpoint_activations
    if t.sync_bn and r.info.enabled:
        if r.device.type != "cuda":
            raise ConfigError("train.sync_bn needs CUDA: torch's SyncBatchNorm does not run on CPU")
        if cfg.model.has_snn and cfg.model.snn_bn_stats == "per_timestep":
            raise ConfigError(
                "train.sync_bn has no per-timestep form for the SNN's BatchNorm: set "
                "model.snn_bn_stats: folded to use it, or train without sync_bn"
            )
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    say = (lambda line: print(line, file=sys.stderr)) if r.info.is_main else None
    model.to(r.device, memory_format=memory_format_for(t.memory_format, r.device, log=say))
    r.model = r.bare = model
    r.optimizer = torch.optim.SGD(
        model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, nesterov=t.nesterov
    )
    total_steps = r.steps_per_epoch * t.epochs
    warmup = round(t.warmup_epochs * r.steps_per_epoch)
    min_ratio = t.min_lr / t.lr
    r.scheduler = torch.optim.lr_scheduler.LambdaLR(
        r.optimizer,
        lambda s: lr_factor(s, total=total_steps, warmup=warmup, schedule=t.schedule, min_ratio=min_ratio),
    )
    r.amp_dtype = amp_dtype_for(t.amp, r.device, log=say)
    r.scaler = torch.amp.GradScaler("cuda", enabled=r.amp_dtype == torch.float16 and r.device.type == "cuda")


# -- one epoch ----------------------------------------------------------------------------------


def _start_epoch(r: Run, st: TrainState) -> None:
    """Data order of this epoch (skipping the batches a mid-epoch resume has seen) and fresh sums."""
    t = r.cfg.train
    r.sampler.set_epoch(st.epoch)
    r.loader_gen.manual_seed(t.seed * 100_003 + st.epoch)
    if st.epoch_step:
        r.sampler.skip_batches(st.epoch_step, r.per_rank * t.accum_steps)
    r.model.train()
    st.sums, st.window, st.epoch_seconds_before = np.zeros(3), np.zeros(3), 0.0
    if st.resumed_sums is not None:  # the interrupted epoch's sums: its line covers the whole epoch
        st.sums = np.asarray(st.resumed_sums["epoch"], dtype=np.float64)
        st.window = np.asarray(st.resumed_sums["window"], dtype=np.float64)
        st.epoch_seconds_before = float(st.resumed_sums["seconds"])
    st.resumed_sums = None
    st.epoch_start = st.window_start = time.perf_counter()


def train_one_epoch(r: Run, st: TrainState, stop: StopRequest) -> bool:
    """The rest of epoch st.epoch, step by step; True when train.max_steps ends the run. Writes last.pt
    mid-epoch every checkpoint_every_steps, at max_steps, and on Ctrl-C (then raises KeyboardInterrupt)."""
    t = r.cfg.train
    _start_epoch(r, st)
    bar = tqdm(
        r.loader,
        desc=f"epoch {st.epoch + 1}/{t.epochs}",
        leave=False,
        disable=not r.progress,
        initial=st.epoch_step,
        total=r.steps_per_epoch,
    )
    for clip, label in bar:
        if st.epoch_step >= r.steps_per_epoch:
            break
        batch, lr = train_step(r, clip, label)
        st.step += 1
        st.epoch_step += 1
        st.sums += batch
        st.window += batch
        if r.progress:
            bar.set_postfix(loss=f"{batch[0] / batch[2]:.3f}", lr=f"{lr:.3g}")
        if t.log_every_steps and st.step % t.log_every_steps == 0:
            _log_steps(r, st, lr)
        at_limit = t.max_steps and st.step >= t.max_steps
        mid_epoch = st.epoch_step < r.steps_per_epoch
        if mid_epoch and (at_limit or (t.checkpoint_every_steps and st.step % t.checkpoint_every_steps == 0)):
            if r.info.is_main:
                save_checkpoint(r.out / "last.pt", checkpoint_state(r, st, st.epoch, st.epoch_step))
            barrier(r.info)
        if at_limit:
            bar.close()
            return True
        if stop.requested:
            bar.close()
            if mid_epoch:  # at an epoch's end, the epoch-end save follows
                save_checkpoint(r.out / "last.pt", checkpoint_state(r, st, st.epoch, st.epoch_step))
                stop.interrupt(f"interrupted at step {st.step}: saved {r.out / 'last.pt'}")
            break
    bar.close()
    return False


def train_step(r: Run, clip: torch.Tensor, label: Any) -> tuple[np.ndarray, float]:
    """One optimizer step over a global batch split into accum_steps interleaved micro-batches.
    Returns this rank's (loss * n, correct, n) and the step's learning rate."""
    t = r.cfg.train
    clip = clip.to(r.device, non_blocking=True)
    label = torch.as_tensor(label).to(r.device, non_blocking=True)
    r.optimizer.zero_grad(set_to_none=True)
    batch = np.zeros(3)
    with _lean_step(r):
        for m in range(t.accum_steps):
            batch += _micro_step(r, clip[m :: t.accum_steps], label[m :: t.accum_steps], m)
    if t.grad_clip > 0:
        r.scaler.unscale_(r.optimizer)
        torch.nn.utils.clip_grad_norm_(r.model.parameters(), t.grad_clip)
    lr = r.optimizer.param_groups[0]["lr"]
    scale = r.scaler.get_scale() if r.scaler.is_enabled() else 0.0
    r.scaler.step(r.optimizer)  # after SGDInBackward: no gradients left, a no-op the scheduler expects
    r.scaler.update()
    if not r.scaler.is_enabled() or r.scaler.get_scale() >= scale:
        r.scheduler.step()  # not after a step fp16's GradScaler skipped (inf grads lower its scale)
    return batch, lr


def _micro_step(r: Run, clip: torch.Tensor, label: torch.Tensor, m: int) -> np.ndarray:
    """Forward and backward of micro-batch m: (loss * n, correct, n)."""
    t = r.cfg.train
    last = not r.info.enabled or m == t.accum_steps - 1
    sync = contextlib.nullcontext() if last else r.model.no_sync()
    with sync, plain_backward(not t.lean_memory):
        dtype = r.amp_dtype or torch.float32
        with torch.autocast(r.device.type, dtype=dtype, enabled=r.amp_dtype is not None):
            logits = r.model(clip)
        loss = F.cross_entropy(logits.float(), label)
        if t.lean_memory and r.device.type == "cpu" and heap_in_use() == "glibc":
            release_free_heap()  # backward starts from what is live (tcmalloc reuses its free spans)
        r.scaler.scale(loss / t.accum_steps).backward()
    return np.array((float(loss.detach()) * len(label), float((logits.argmax(1) == label).sum()), len(label)))


def _lean_step(r: Run) -> contextlib.AbstractContextManager:
    """With train.lean_memory, the SGD update inside backward where the step allows it: no gradient is
    kept for optimizer.step() (tests/test_sgd_in_backward.py)."""
    t = r.cfg.train
    fits, _ = fits_in_backward(
        grad_clip=t.grad_clip, accum_steps=t.accum_steps, distributed=r.info.enabled,
        grad_scaler=r.scaler.is_enabled(),
    )
    return SGDInBackward(r.optimizer) if t.lean_memory and fits else contextlib.nullcontext()


def _heap_release(r: Run) -> contextlib.AbstractContextManager:
    """On a CPU with train.heap_release_mb > 0, the heap trimmed at the edges of the network's pieces
    during an epoch's steps. Entered once per epoch: entered per step (a trim and a new baseline each
    time) it measured slower and no leaner (1.30x vs 1.10x the authors' time, 0.59x vs 0.55x memory)."""
    if r.device.type != "cpu" or r.cfg.train.heap_release_mb <= 0:
        return contextlib.nullcontext()
    edges = (m for ms in _unwrap(r.model).regions().values() for m in ms)
    return release_heap_at(edges, waste_mb=r.cfg.train.heap_release_mb)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def _log_steps(r: Run, st: TrainState, lr: float) -> None:
    """A 'step' line over the steps since the last one (all ranks' clips)."""
    w = all_reduce_sum(list(st.window), r.info, r.device)
    dt = time.perf_counter() - st.window_start
    r.log.write(
        dict(
            kind="step",
            epoch=st.epoch + 1,
            step=st.step,
            loss=w[0] / w[2],
            train_acc=w[1] / w[2],
            lr=lr,
            time=time.perf_counter() - st.run_start,
            clips_per_s=w[2] / dt,
        )
    )
    st.window[:] = 0
    st.window_start = time.perf_counter()


def end_epoch(r: Run, st: TrainState) -> dict[str, Any]:
    """After a full epoch: its 'epoch' line (validated every eval_every epochs), best.pt, last.pt."""
    t = r.cfg.train
    st.epoch += 1
    st.epoch_step = 0
    totals = all_reduce_sum(list(st.sums), r.info, r.device)
    elapsed = time.perf_counter() - st.epoch_start + st.epoch_seconds_before
    record = dict(
        kind="epoch",
        epoch=st.epoch,
        step=st.step,
        loss=totals[0] / totals[2],
        train_acc=totals[1] / totals[2],
        lr=r.optimizer.param_groups[0]["lr"],
        time=time.perf_counter() - st.run_start,
        epoch_seconds=elapsed,
        clips_per_s=totals[2] / elapsed,
    )
    if st.resumed_at is not None:  # this epoch was interrupted and resumed at step resumed_at
        record["resumed_at_step"] = st.resumed_at
        if st.epoch_seconds_before == 0.0:  # a checkpoint without the sums: say what loss covers
            record["loss_from_step"] = st.resumed_at
        st.resumed_at = None
    skipped = skipped_count(r.train_ds)
    if skipped is not None:
        record["skipped_videos"] = skipped
    if st.epoch % t.eval_every == 0 or st.epoch == t.epochs:
        _validate_and_keep_best(r, st, record)
    record.update(best_val_acc=st.best)
    r.log.write(record)
    if r.info.is_main:
        save_checkpoint(r.out / "last.pt", checkpoint_state(r, st, st.epoch, 0))
        val_text = f" val acc {record['val_acc']:.3f}" if "val_acc" in record else ""
        print(
            f"epoch {st.epoch}/{t.epochs}: loss {record['loss']:.4f} train acc {record['train_acc']:.3f}"
            f"{val_text} ({elapsed:.0f} s, {record['clips_per_s']:.1f} clips/s)",
            file=sys.stderr,
        )
    barrier(r.info)
    return record


def validate(r: Run) -> dict[str, Any]:
    """Metrics of the validation split (evaluate.evaluate_dataset) with rank 0's BatchNorm statistics."""
    broadcast_buffers(r.bare, r.info)  # BN running stats differ per rank: evaluate with rank 0's
    return evaluate_dataset(r.bare, r.val_ds, desc="val", **r.eval_kwargs)


def _validate_and_keep_best(r: Run, st: TrainState, record: dict[str, Any]) -> None:
    val = validate(r)
    record.update(val_acc=val["video_top1"], val_clip_acc=val["clip_top1"], val_top5=val["video_top5"])
    if "skipped_videos" in val:
        record["val_skipped_videos"] = val["skipped_videos"]
    if st.best is None or val["video_top1"] > st.best:
        st.best, st.best_epoch = val["video_top1"], st.epoch
        if r.info.is_main:
            save_checkpoint(r.out / "best.pt", checkpoint_state(r, st, st.epoch, 0))


def _final_test(r: Run) -> dict[str, Any]:
    """Evaluate the test split once, with best.pt's weights."""
    barrier(r.info)
    best = load_checkpoint(r.out / "best.pt")
    r.bare.load_state_dict(best["model"])
    test_ds = build_split(r.cfg.data, r.cfg.model, "test")
    metrics = evaluate_dataset(r.bare, test_ds, desc="test", **r.eval_kwargs)
    metrics.update(checkpoint=str(r.out / "best.pt"), best_epoch=best["epoch"], split="test")
    if r.info.is_main:
        write_text_atomic(r.out / "test_results.json", json.dumps(metrics, indent=1))
        plot_confusion(
            metrics["confusion"],
            metrics["class_names"],
            r.out / "confusion_test.png",
            title=f"{r.cfg.data.dataset} test (best.pt, epoch {best['epoch']})",
        )
        r.log.write(
            dict(
                kind="test",
                epoch=best["epoch"],
                test_acc=metrics["video_top1"],
                test_clip_acc=metrics["clip_top1"],
                test_top5=metrics["video_top5"],
                num_videos=metrics["num_videos"],
            )
        )
    return metrics


# -- CLI ----------------------------------------------------------------------------------------


def make_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m respike_neuro.train",
        usage="%(prog)s [--config FILE] [--out DIR] [--set SECTION.KEY=VALUE ...] [--SECTION.KEY VALUE ...]",
        description="Train ReSpike / its ablation variants from a YAML config "
        "(single process or torchrun DDP).",
        epilog="Every config key also has a flag --section.key VALUE (values parsed as YAML). Precedence: "
        "defaults < --config file < variant < --set / --section.key flags.",
    )
    return add_config_arguments(parser)



def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ConfigError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    if argv is None:  # a command, not a call from Python: the process is ours to restart
        try:
            _choose_heap(cfg)
        except RuntimeError as err:
            print(f"{parser.prog}: error: {err}", file=sys.stderr)
            return 2
    try:
        return guarded(
            lambda: _train_and_report(cfg),
            errors=(ConfigError, CheckpointError, ValueError, TypeError, OSError),
            prefix=f"{parser.prog}: error",
            interrupted="interrupted; resume with the same --out (last.pt)",
        )
    finally:
        from respike_neuro.distributed import cleanup_distributed

        cleanup_distributed()


def _choose_heap(cfg: RunConfig) -> None:
    """train.allocator and train.lean_heap: restart this command with tcmalloc preloaded
    (allocator.restart_with_tcmalloc) or with glibc's lean-heap tunables (restart_with_lean_heap)
    where that changes something; otherwise one line says which heap the steps run on and why."""
    t = cfg.train
    device = resolve_device(t.device).type
    heap, why = allocator_for(t.allocator, device, lean_heap=t.lean_heap)
    if heap == "tcmalloc" and heap_in_use() != "tcmalloc":
        restart_with_tcmalloc(why)
    if t.lean_heap and device == "cpu" and heap != "tcmalloc":  # glibc's tunables: nothing on tcmalloc
        why_not = lean_heap_unavailable()
        if why_not is None:
            restart_with_lean_heap()
        else:
            why = f"train.lean_heap not available here: {why_not}"
    if os.environ.get("RANK", "0") == "0":  # one line per run, not per DDP rank
        print(f"train.allocator {t.allocator}: {heap} ({why})", file=sys.stderr)


def _train_and_report(cfg: RunConfig) -> int:
    summary = run(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        if "test" in summary:
            m = summary["test"]
            print(
                f"test ({m['num_videos']} videos, best.pt from epoch {summary['best_epoch']}): "
                f"video top-1 {m['video_top1']:.4f}, clip top-1 {m['clip_top1']:.4f}, "
                f"top-5 {m['video_top5']:.4f}"
            )
            print(f"  ({summary_line(m)})", file=sys.stderr)
        elif not summary["finished"]:
            print(f"stopped at step {summary['step']} (train.max_steps); resume with the same --out")
        print(f"best checkpoint: {summary['best']} (val acc {summary['best_val_acc']})")
        print(f"metrics: {summary['metrics']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
