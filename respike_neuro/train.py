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
import signal
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch.utils.data import DataLoader
from tqdm import tqdm

from respike_neuro.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    check_state_dict,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from respike_neuro.cli import ArgumentParser, check_output_dir, guarded
from respike_neuro.config import (  # noqa: F401  (tests wire these with run)
    ConfigError,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    add_config_arguments,
    build_run_config,
    config_from_args,
    read_yaml,
)
from respike_neuro.data.registry import InMemory, build_split
from respike_neuro.devices import amp_dtype_for, resolve_device, seed_everything, seed_worker
from respike_neuro.distributed import (
    DistInfo,
    TrainSampler,
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    init_distributed,
)
from respike_neuro.evaluate import evaluate_dataset, plot_confusion, skipped_count, summary_line
from respike_neuro.fileio import write_text_atomic


def lr_factor(step: int, *, total: int, warmup: int, schedule: str, min_ratio: float) -> float:
    """LR multiplier at optimizer step `step`: linear warmup, then cosine to min_ratio (or constant)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


# -- the run ------------------------------------------------------------------------------------


class JsonlLog:
    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")


def _resume_path(t: TrainConfig, out: Path) -> Path | None:
    if t.resume == "never":
        return None
    if t.resume == "auto":
        last = out / "last.pt"
        return last if last.is_file() else None
    path = Path(t.resume)
    if not path.is_file():
        raise ConfigError(f"train.resume: checkpoint {path} does not exist")
    return path


RESULT_FILES = ("best.pt", "metrics.jsonl", "test_results.json", "confusion_test.png", "last.pt")


class _StopRequest:
    """Ctrl-C during training: finish the current step, write last.pt, then raise KeyboardInterrupt
    (a second Ctrl-C stops at once). Single process only: DDP ranks would stop at different steps."""

    def __init__(self, *, enabled: bool) -> None:
        self.requested = False
        self._previous: Any = None
        if enabled and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl-C: stopping after this step, saving last.pt (Ctrl-C again: stop now)", file=sys.stderr)

    def interrupt(self, message: str) -> None:
        print(message, file=sys.stderr)
        raise KeyboardInterrupt

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def _check_ann_weights(model: ModelConfig) -> None:
    """ann_weights naming a file must name a torch file (random bytes gave a 38-line UnpicklingError)."""
    weights = model.ann_weights
    if not model.has_ann or weights in (None, "imagenet"):
        return
    path = Path(weights)
    if not path.is_file():
        raise ConfigError(f"model.ann_weights: {path} is not a file")
    if not zipfile.is_zipfile(path):
        raise ConfigError(f"model.ann_weights: {path} is not a torch weights file (no zip archive inside)")


def _set_aside_earlier_results(out: Path, t: TrainConfig, is_main: bool) -> None:
    """A fresh run never deletes another run's results: with resume 'auto' (and no last.pt) it refuses;
    with resume 'never' it moves them into <out>/previous-<time>/ and says so in one line."""
    found = [name for name in RESULT_FILES if (out / name).exists()]
    if not found:
        return
    if t.resume == "auto":
        raise ConfigError(
            f"train.out {out} holds another run's results ({', '.join(found)}) and no last.pt to resume; "
            "choose another --out, or --resume never to move them aside"
        )
    if not is_main:
        return
    aside = out / time.strftime("previous-%Y%m%d-%H%M%S")
    n = 1
    while aside.exists():
        aside = out / f"{time.strftime('previous-%Y%m%d-%H%M%S')}-{n}"
        n += 1
    aside.mkdir()
    for name in (*found, "config.yaml"):
        if (out / name).exists():
            os.replace(out / name, aside / name)
    print(f"moved the earlier run's results ({', '.join(found)}) to {aside}", file=sys.stderr)


def _truncate_metrics(path: Path, *, step: int, epoch: int) -> None:
    """After a resume from `step`: drop the lines written after that checkpoint (they are redone), so
    metrics.jsonl never repeats a step; a 'test' line is written again if the run finishes."""
    if not path.is_file():
        return
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1  # a line cut short by a kill
            continue
        kind = record.get("kind") if isinstance(record, dict) else None
        if (kind == "step" and record.get("step", 0) <= step) or (
            kind == "epoch" and record.get("epoch", 0) <= epoch
        ):
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        write_text_atomic(path, "".join(x + "\n" for x in kept))


def run(cfg: RunConfig, *, on_epoch_end: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train, validate every epoch, keep best.pt, test once with it. Returns a summary dict."""
    t = cfg.train
    probe_device = resolve_device(t.device)
    info = init_distributed(probe_device.type)
    device = resolve_device(t.device, info)
    if t.threads:
        torch.set_num_threads(t.threads)
    out = Path(t.out)
    check_output_dir(out, "train.out")  # before any work: an unwritable --out used to fail after training
    _check_ann_weights(cfg.model)
    resume = _resume_path(t, out)
    if resume is None:
        _set_aside_earlier_results(out, t, info.is_main)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    barrier(info)
    per_rank, rem = divmod(t.batch_size, info.world_size * t.accum_steps)
    if rem or per_rank < 1:
        raise ConfigError(
            f"train.batch_size={t.batch_size} must be a positive multiple of world size "
            f"{info.world_size} x accum_steps {t.accum_steps}"
        )
    progress = t.progress and info.is_main
    seed_everything(t.seed)

    train_ds = build_split(cfg.data, cfg.model, "train")
    val_ds = build_split(cfg.data, cfg.model, "val")
    if cfg.data.cache:
        train_ds = InMemory(train_ds, desc="cache train", progress=progress)
        val_ds = InMemory(val_ds, desc="cache val", progress=progress)
    class_names = list(getattr(train_ds, "class_names", None) or range(cfg.model.num_classes))
    class_names = [str(c) for c in class_names]
    num_classes = getattr(train_ds, "num_classes", len(class_names))
    if num_classes != cfg.model.num_classes:
        raise ConfigError(
            f"model.num_classes={cfg.model.num_classes} but dataset {cfg.data.dataset!r} has "
            f"{num_classes} classes; set model.num_classes={num_classes}"
        )
    steps_per_epoch = len(train_ds) // (per_rank * t.accum_steps * info.world_size)
    if steps_per_epoch < 1:
        raise ConfigError(
            f"train split has {len(train_ds)} clips, fewer than one global batch of {t.batch_size}"
        )
    total_steps = steps_per_epoch * t.epochs

    from respike_neuro.models.hybrid import build_model

    model = build_model(cfg.model)
    model.checkpoint_activations = t.checkpoint_activations
    if t.sync_bn and info.enabled:
        if device.type != "cuda":
            raise ConfigError("train.sync_bn needs CUDA: torch's SyncBatchNorm does not run on CPU")
        if cfg.model.has_snn and cfg.model.snn_bn_stats == "per_timestep":
            raise ConfigError(
                "train.sync_bn has no per-timestep form for the SNN's BatchNorm: set "
                "model.snn_bn_stats: folded to use it, or train without sync_bn"
            )
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    bare = model
    optimizer = torch.optim.SGD(
        model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, nesterov=t.nesterov
    )
    warmup = round(t.warmup_epochs * steps_per_epoch)
    min_ratio = t.min_lr / t.lr
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_factor(s, total=total_steps, warmup=warmup, schedule=t.schedule, min_ratio=min_ratio),
    )
    amp_dtype = amp_dtype_for(t.amp, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16 and device.type == "cuda")

    epoch, step, epoch_step, best, best_epoch = 0, 0, 0, None, None
    resumed_sums: dict[str, Any] | None = None  # the interrupted epoch's running loss sums
    resumed_at: int | None = None  # step at which a mid-epoch resume started
    if resume is not None:
        ckpt = load_checkpoint(resume)
        if ckpt["model_config"] != cfg.model.to_dict():
            diff = sorted(
                k
                for k in set(ckpt["model_config"]) | set(cfg.model.to_dict())
                if ckpt["model_config"].get(k) != cfg.model.to_dict().get(k)
            )
            raise ConfigError(
                f"cannot resume from {resume}: its model config differs in {diff} "
                f"(use --resume never or another --out)"
            )
        check_state_dict(bare, ckpt["model"], source=f"checkpoint {resume}")
        bare.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        epoch, step, epoch_step = ckpt["epoch"], ckpt["step"], ckpt.get("epoch_step", 0)
        best, best_epoch = ckpt.get("best_metric"), ckpt.get("best_epoch")
        set_rng_state(ckpt["rng"])
        if epoch_step:
            resumed_at = step
            sums_state = ckpt.get("metric_sums")
            if isinstance(sums_state, dict) and not info.enabled:  # per-rank sums: one process only
                resumed_sums = sums_state
        if info.is_main:
            _truncate_metrics(out / "metrics.jsonl", step=step, epoch=epoch)
            print(f"resumed from {resume}: epoch {epoch}, step {step}", file=sys.stderr)

    if info.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            bare,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=t.find_unused_parameters,
        )

    sampler = TrainSampler(train_ds, info, seed=t.seed)
    loader_gen = torch.Generator()
    loader = DataLoader(
        train_ds,
        batch_size=per_rank * t.accum_steps,
        sampler=sampler,
        drop_last=True,
        num_workers=cfg.data.workers,
        worker_init_fn=seed_worker,
        generator=loader_gen,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    log = JsonlLog(out / "metrics.jsonl", info.is_main)
    if info.is_main:
        write_text_atomic(out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    sums = np.zeros(3)  # loss * n, correct, n (this rank, this epoch)
    window = np.zeros(3)
    epoch_seconds_before = 0.0  # of an epoch interrupted and resumed: the time spent before

    def state(kind_epoch: int, kind_epoch_step: int) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if kind_epoch_step:  # mid-epoch: what the epoch's metrics line needs after a resume
            extra["metric_sums"] = {
                "epoch": sums.tolist(),
                "window": window.tolist(),
                "seconds": epoch_seconds_before + time.perf_counter() - epoch_start,
            }
        return dict(
            **extra,
            format_version=FORMAT_VERSION,
            model_config=cfg.model.to_dict(),
            train_config=cfg.to_dict(),
            model=bare.state_dict(),
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            scaler=scaler.state_dict(),
            epoch=kind_epoch,
            step=step,
            epoch_step=kind_epoch_step,
            best_metric=best,
            best_epoch=best_epoch,
            rng=rng_state(),
            class_names=class_names,
        )

    eval_kwargs = dict(
        device=device,
        class_names=class_names,
        batch_size=t.eval_batch_size,
        workers=cfg.data.workers,
        amp_dtype=amp_dtype,
        info=info,
        progress=progress,
    )
    stopped = False
    run_start = epoch_start = time.perf_counter()
    stop = _StopRequest(enabled=info.is_main and not info.enabled)
    try:
        while epoch < t.epochs and not stopped:
            sampler.set_epoch(epoch)
            loader_gen.manual_seed(t.seed * 100_003 + epoch)
            if epoch_step:
                sampler.skip_batches(epoch_step, per_rank * t.accum_steps)
            model.train()
            sums = np.zeros(3)  # loss * n, correct, n (this rank, this epoch)
            window = np.zeros(3)
            epoch_seconds_before = 0.0
            if resumed_sums is not None:  # the interrupted epoch's sums: its line covers the whole epoch
                sums = np.asarray(resumed_sums["epoch"], dtype=np.float64)
                window = np.asarray(resumed_sums["window"], dtype=np.float64)
                epoch_seconds_before = float(resumed_sums["seconds"])
            resumed_sums = None
            epoch_start = window_start = time.perf_counter()
            bar = tqdm(
                loader,
                desc=f"epoch {epoch + 1}/{t.epochs}",
                leave=False,
                disable=not progress,
                initial=epoch_step,
                total=steps_per_epoch,
            )
            for clip, label in bar:
                if epoch_step >= steps_per_epoch:
                    break
                clip = clip.to(device, non_blocking=True)
                label = torch.as_tensor(label).to(device, non_blocking=True)
                optimizer.zero_grad(set_to_none=True)
                batch = np.zeros(3)
                for m in range(t.accum_steps):
                    c, y = clip[m :: t.accum_steps], label[m :: t.accum_steps]
                    sync = (
                        contextlib.nullcontext()
                        if not info.enabled or m == t.accum_steps - 1
                        else model.no_sync()
                    )
                    with sync:
                        with torch.autocast(
                            device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
                        ):
                            logits = model(c)
                        loss = F.cross_entropy(logits.float(), y)
                        scaler.scale(loss / t.accum_steps).backward()
                    batch += (float(loss.detach()) * len(y), float((logits.argmax(1) == y).sum()), len(y))
                if t.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
                lr = optimizer.param_groups[0]["lr"]
                scale = scaler.get_scale() if scaler.is_enabled() else 0.0
                scaler.step(optimizer)
                scaler.update()
                if not scaler.is_enabled() or scaler.get_scale() >= scale:
                    scheduler.step()  # not after a step fp16's GradScaler skipped (inf grads lower its scale)
                step += 1
                epoch_step += 1
                sums += batch
                window += batch
                if progress:
                    bar.set_postfix(loss=f"{batch[0] / batch[2]:.3f}", lr=f"{lr:.3g}")
                if t.log_every_steps and step % t.log_every_steps == 0:
                    w = all_reduce_sum(list(window), info, device)
                    dt = time.perf_counter() - window_start
                    log.write(
                        dict(
                            kind="step",
                            epoch=epoch + 1,
                            step=step,
                            loss=w[0] / w[2],
                            train_acc=w[1] / w[2],
                            lr=lr,
                            time=time.perf_counter() - run_start,
                            clips_per_s=w[2] / dt,
                        )
                    )
                    window[:] = 0
                    window_start = time.perf_counter()
                at_limit = t.max_steps and step >= t.max_steps
                if epoch_step < steps_per_epoch and (
                    at_limit or (t.checkpoint_every_steps and step % t.checkpoint_every_steps == 0)
                ):
                    if info.is_main:
                        save_checkpoint(out / "last.pt", state(epoch, epoch_step))
                    barrier(info)
                if at_limit:
                    stopped = True
                    break
                if stop.requested:
                    bar.close()
                    if epoch_step < steps_per_epoch:  # at an epoch's end, the epoch-end save follows
                        save_checkpoint(out / "last.pt", state(epoch, epoch_step))
                        stop.interrupt(f"interrupted at step {step}: saved {out / 'last.pt'}")
                    break
            bar.close()
            if epoch_step < steps_per_epoch:  # stopped mid-epoch by max_steps
                break
            epoch += 1
            epoch_step = 0
            totals = all_reduce_sum(list(sums), info, device)
            elapsed = time.perf_counter() - epoch_start + epoch_seconds_before
            record = dict(
                kind="epoch",
                epoch=epoch,
                step=step,
                loss=totals[0] / totals[2],
                train_acc=totals[1] / totals[2],
                lr=optimizer.param_groups[0]["lr"],
                time=time.perf_counter() - run_start,
                epoch_seconds=elapsed,
                clips_per_s=totals[2] / elapsed,
            )
            if resumed_at is not None:  # this epoch was interrupted and resumed at step resumed_at
                record["resumed_at_step"] = resumed_at
                if epoch_seconds_before == 0.0:  # a checkpoint without the sums: say what loss covers
                    record["loss_from_step"] = resumed_at
                resumed_at = None
            skipped = skipped_count(train_ds)
            if skipped is not None:
                record["skipped_videos"] = skipped
            if epoch % t.eval_every == 0 or epoch == t.epochs:
                broadcast_buffers(bare, info)  # BN running stats differ per rank: evaluate with rank 0's
                val = evaluate_dataset(bare, val_ds, desc="val", **eval_kwargs)
                record.update(
                    val_acc=val["video_top1"], val_clip_acc=val["clip_top1"], val_top5=val["video_top5"]
                )
                if "skipped_videos" in val:
                    record["val_skipped_videos"] = val["skipped_videos"]
                if best is None or val["video_top1"] > best:
                    best, best_epoch = val["video_top1"], epoch
                    if info.is_main:
                        save_checkpoint(out / "best.pt", state(epoch, 0))
            record.update(best_val_acc=best)
            log.write(record)
            if info.is_main:
                save_checkpoint(out / "last.pt", state(epoch, 0))
                val_text = f" val acc {record['val_acc']:.3f}" if "val_acc" in record else ""
                print(
                    f"epoch {epoch}/{t.epochs}: loss {record['loss']:.4f} train acc {record['train_acc']:.3f}"
                    f"{val_text} ({elapsed:.0f} s, {record['clips_per_s']:.1f} clips/s)",
                    file=sys.stderr,
                )
            barrier(info)
            if on_epoch_end is not None:
                on_epoch_end(record)
            if t.max_steps and step >= t.max_steps:
                stopped = True
            if stop.requested:
                stop.interrupt(f"interrupted after epoch {epoch}: saved {out / 'last.pt'}")
    finally:
        stop.restore()

    summary: dict[str, Any] = dict(
        out=str(out),
        epoch=epoch,
        step=step,
        best_val_acc=best,
        best_epoch=best_epoch,
        best=str(out / "best.pt"),
        last=str(out / "last.pt"),
        metrics=str(out / "metrics.jsonl"),
        finished=epoch >= t.epochs,
    )
    if epoch >= t.epochs and cfg.data.test_clips != 0:
        summary["test"] = _final_test(cfg, bare, out, info, log, eval_kwargs)
    return summary


def _final_test(
    cfg: RunConfig,
    model: torch.nn.Module,
    out: Path,
    info: DistInfo,
    log: JsonlLog,
    eval_kwargs: dict[str, Any],
) -> dict[str, Any]:
    """Evaluate the test split once, with best.pt's weights."""
    barrier(info)
    best = load_checkpoint(out / "best.pt")
    model.load_state_dict(best["model"])
    test_ds = build_split(cfg.data, cfg.model, "test")
    metrics = evaluate_dataset(model, test_ds, desc="test", **eval_kwargs)
    metrics.update(checkpoint=str(out / "best.pt"), best_epoch=best["epoch"], split="test")
    if info.is_main:
        write_text_atomic(out / "test_results.json", json.dumps(metrics, indent=1))
        plot_confusion(
            metrics["confusion"],
            metrics["class_names"],
            out / "confusion_test.png",
            title=f"{cfg.data.dataset} test (best.pt, epoch {best['epoch']})",
        )
        log.write(
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
