"""Quantisation-aware fine-tuning of the spiking branch in Loihi 2 arithmetic (the lava-dl way).

    python -m respike_neuro.qat runs/default/best.pt --nir runs/default/model.nir -o runs/default/qat.nir

Why: post-training quantisation is enough at 8 bits for the default model (same accuracy), but not at
narrower weights (3-bit mantissas: test accuracy 55.4 % -> 27.9 %), and a calibrated deployment is only
as reproducible as its calibration data. Here the spiking branch is trained *in* the chip's arithmetic
(3 bits: back to 55.0 %, README). It does not raise 8-bit agreement with the float model on held-out
clips: that limit is the float model's own stability (README, rung 5).

The forward pass is the torch emulator's integer arithmetic (respike_neuro/torch_emulator.py, bit-exact
with Lava's fixed-point models: weight mantissas of --weight-bits (default: the input NIR's own width if
it is a fine-tuned one, else 8); 24-bit graded payloads;
Lava's bit-accurate LIF); the backward pass goes straight through the roundings and uses the training
neuron's ATan surrogate at the spikes. The formats (fractional bits of every stream) come from the usual
calibration once and are then pinned.

Output: a NIR file whose conv weights lie on Loihi's grid (mantissa * 2**exponent) and whose metadata
pins the formats (`fixed_point_frac_bits`), so the planner reproduces the trained integers without
calibrating, and Lava's fixed-point run is the model that was trained and evaluated here: same spikes,
same integers, same logits. Only the spiking branch trains; the host part (ANN, cross-attention, head)
is frozen, so the new file still pairs with the same checkpoint. The best epoch on the validation split
(epoch 0 = the post-training-quantised start) is kept, written atomically after every improvement; an
interrupted run leaves that file, and passing it back as --nir continues from it (formats stay pinned;
the learning-rate schedule starts again).
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from respike_neuro.bridge import HybridBridge, sha256_of
from respike_neuro.checkpoint import CheckpointError, load_checkpoint
from respike_neuro.cli import (
    ArgumentParser,
    UsageError,
    check_device,
    check_input_file,
    check_number,
    check_output_file,
    guarded,
)
from respike_neuro.config import ModelConfig
from respike_neuro.fileio import atomic_write
from respike_neuro.host import host_context, sequence_logits
from respike_neuro.models.hybrid import branch_frames
from respike_neuro.models.neuron import membrane_alpha
from respike_neuro.sim.fixed_point import PINNED_KEY, WEIGHT_BITS_KEY
from respike_neuro.torch_emulator import TorchPlanEmulator


@dataclass(frozen=True)
class QATConfig:
    """Fine-tuning recipe (CLI defaults)."""

    epochs: int = 2
    lr: float = 1e-3  # SGD with momentum, cosine to 0 over the run
    momentum: float = 0.9
    batch_size: int = 16
    clips_per_epoch: int = 960
    val_clips: int | None = None  # None: the whole validation split (model selection)
    calibration_clips: int = 8  # validation clips that set the formats (as evaluate --deploy fixed)
    # weight mantissa bits (Loihi 2 synapses hold 1-8); the trained values keep to it. None: a fine-tuned
    # input NIR's own width, else 8
    weight_bits: int | None = None
    loss: str = "distill"  # "distill": KL to the float model's logits; "ce": the labels
    seed: int = 0
    threads: int = 0  # 0: torch's default
    device: str = "auto"  # where the host model and the integer emulator run: auto = cuda when present

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 0, f"epochs must be >= 0, got {self.epochs}"),
            (self.lr > 0 and math.isfinite(self.lr), f"lr must be finite and > 0, got {self.lr}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.clips_per_epoch >= 1, f"clips_per_epoch must be >= 1, got {self.clips_per_epoch}"),
            (self.val_clips is None or self.val_clips >= 1, f"val_clips must be >= 1, got {self.val_clips}"),
            (self.calibration_clips >= 1, f"calibration_clips must be >= 1, got {self.calibration_clips}"),
            (self.loss in ("distill", "ce"), f"loss must be 'distill' or 'ce', got {self.loss!r}"),
            (self.weight_bits is None or 2 <= self.weight_bits <= 8,
             f"weight_bits must be in [2, 8], got {self.weight_bits}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)


class QATModel(torch.nn.Module):
    """Host model (frozen) + trainable spiking branch in Loihi 2 integer arithmetic: clips -> logits.

    The host side uses the bridge's own pieces (host_context, sequence_logits) with tensors kept in
    autograd; tests/test_qat.py checks spikes and logits against the bridge's torch backend.
    """

    def __init__(self, bridge: HybridBridge, *, alpha: float) -> None:
        super().__init__()
        if bridge.spiking.fixed is None:
            raise ValueError("QATModel needs a bridge in fixed mode")
        self.host, self.cfg, self.timesteps = bridge.model, bridge.cfg, bridge.timesteps
        self.fixed = bridge.spiking.fixed
        self.snn = TorchPlanEmulator(
            bridge.spiking.plan, self.timesteps, self.fixed, device=bridge.device, trainable=True, alpha=alpha
        )
        self.device = bridge.device
        for p in self.host.parameters():
            p.requires_grad_(False)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        host, cfg, T = self.host, self.cfg, self.timesteps
        clips = clips.to(self.device, torch.float64)
        with torch.no_grad():  # the ANN is frozen
            ctx = host_context(host, clips, T)
        snn = branch_frames(clips, cfg.stride, cfg.inputs, "snn").flatten(0, 1)  # (S, T, 3, H, W)
        s = snn.shape[0]

        def seq_major(x: torch.Tensor) -> torch.Tensor:  # (T, S, ...) -> the bridge's (S*T, ...)
            return x.transpose(0, 1).flatten(0, 1)

        def fuse(stage: int, x: torch.Tensor) -> torch.Tensor:  # (T, S, ...) -> fused, same layout
            y = host.fuse(stage - 1, seq_major(x), ctx.contexts(stage - 1, s * T))
            return y.view(s, T, *y.shape[1:]).transpose(0, 1)

        fusing = host.fusions is not None
        res = self.snn.run({"residual_in": snn.transpose(0, 1)}, host=fuse if fusing else None)
        self.last_run = res  # spikes, outputs, saturation of this call, (T, S, ...) layout
        x4 = seq_major(res["outputs"]["stage4_out"])
        if fusing:
            x4 = host.fuse(3, x4, ctx.contexts(3, s * T))
        return sequence_logits(host, x4, ctx, clips.shape[0]).mean(1)


def _accuracy(
    model: torch.nn.Module, clips: torch.Tensor, labels: torch.Tensor, batch: int
) -> tuple[float, torch.Tensor]:
    preds = []
    with torch.no_grad():
        for i in range(0, len(clips), batch):
            preds.append(model(clips[i : i + batch]).argmax(1).cpu())
    pred = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)
    return float((pred == labels).float().mean()) if len(labels) else float("nan"), pred


def _split(data, model_cfg, split: str, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    from respike_neuro.data.registry import build_split

    ds = build_split(data, model_cfg, split)
    n = len(ds) if limit is None else min(limit, len(ds))
    if n == 0:
        raise ValueError(f"the {split} split is empty")
    items = [ds[i] for i in range(n)]
    return torch.stack([torch.as_tensor(c) for c, _ in items]), torch.as_tensor([int(y) for _, y in items])


def _float_logits(bridge: HybridBridge, clips: torch.Tensor, batch: int) -> torch.Tensor:
    """The checkpoint's PyTorch model (float64, eval): what the fixed-point model should agree with."""
    return torch.cat([bridge.model(clips[i : i + batch].to(bridge.device, torch.float64))
                      for i in range(0, len(clips), batch)])


def _epoch_clips(data, model_cfg, epoch: int, n: int, gen: torch.Generator) -> Dataset:
    """Training clips for QAT epoch `epoch` (1-based). Built-in synthetic data: n clips of the training stream
    that neither the float model nor an earlier epoch saw (the stream is endless, indexed by (seed, split,
    index)); these are what teach the fixed-point model the float model's near-tie decisions, which the
    float model's own, confidently fitted training clips cannot. Other datasets: n random training clips."""
    from respike_neuro.data.registry import build_split, canonical_name

    if canonical_name(data.dataset) == "synthetic":
        start = data.train_clips + (epoch - 1) * n
        stream = build_split(data.replace(train_clips=start + n), model_cfg, "train")
        return Subset(stream, range(start, start + n))
    ds = build_split(data, model_cfg, "train")
    if len(ds) == 0:
        raise ValueError("the training split is empty")
    return Subset(ds, torch.randint(len(ds), (n,), generator=gen).tolist())


def write_nir_atomic(graph: nir.NIRGraph, path: Path) -> None:
    """The shared atomic write (temporary removed on any failure, free space checked first)."""
    from respike_neuro.export.nir_graph import graph_nbytes

    atomic_write(path, lambda tmp: nir.write(str(tmp), graph), need_bytes=graph_nbytes(graph))


def deployable_graph(bridge: HybridBridge, model: QATModel, record: dict[str, Any]) -> nir.NIRGraph:
    """bridge.graph with the trained weights (on Loihi's grid), the pinned formats and weight width in its
    metadata."""
    graph = bridge.graph
    plan = bridge.spiking.plan
    for key, w in model.snn.deployed_weights().items():
        node = graph.nodes[plan.units[key].nir_key]
        if tuple(np.shape(node.weight)) != w.shape:
            raise AssertionError(f"{key}: NIR weight {np.shape(node.weight)} vs trained {w.shape}")
        node.weight = w
    graph.metadata = dict(graph.metadata or {})
    graph.metadata[PINNED_KEY] = json.dumps(model.fixed.frac_bits)
    graph.metadata[WEIGHT_BITS_KEY] = int(bridge.spiking.weight_bits)
    graph.metadata["qat"] = json.dumps(record)
    return graph


def _train_epoch(model: QATModel, bridge: HybridBridge, loader: DataLoader, opt, sched, cfg: QATConfig, *,
                 desc: str, progress: bool) -> float:
    """One pass over `loader`; returns the mean loss."""
    losses = []
    for x, y in tqdm(loader, desc=desc, leave=False, disable=not progress):
        logits = model(x)
        if cfg.loss == "distill":  # match the float model's class distribution
            with torch.no_grad():
                target = F.log_softmax(_float_logits(bridge, x, cfg.batch_size), 1)
            loss = F.kl_div(F.log_softmax(logits, 1), target, log_target=True, reduction="batchmean")
        else:
            loss = F.cross_entropy(logits, y.to(model.device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    return float(np.mean(losses))


def finetune(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    *,
    nir_path: str | os.PathLike | None = None,
    cfg: QATConfig = QATConfig(),
    progress: bool = True,
    log=print,
) -> dict[str, Any]:
    """Fine-tune the spiking branch of `checkpoint` in Loihi 2 arithmetic; write the best as NIR to `out`.

    Returns the record also stored in the NIR metadata ('qat'): per-epoch loss and validation accuracy,
    the chosen epoch, and timings.
    """
    out = Path(out)
    if out.suffix != ".nir":
        raise ValueError(f"output {out} must end in .nir")
    out.parent.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    t_start = time.perf_counter()
    mcfg, data = _trained_on(checkpoint)
    val_x, val_y = _split(data, mcfg, "val", cfg.val_clips)
    n_cal = min(cfg.calibration_clips, len(val_x))  # spread over the split, as evaluate --deploy fixed
    idx = np.unique(np.linspace(0, len(val_x) - 1, n_cal).round().astype(int))
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    bridge = HybridBridge(checkpoint, nir_path, mode="fixed", backend="torch", device=device,
                          calibration=val_x[torch.as_tensor(idx)], weight_bits=cfg.weight_bits)
    with bridge:  # backend torch starts no Lava process; closed on any error all the same
        cfg = replace(cfg, weight_bits=bridge.spiking.weight_bits)  # the width resolved, for the record
        if bridge.pinned_formats:
            log(f"{nir_path}: formats already pinned (a fine-tuned graph): fine-tuning it further")
        model = QATModel(bridge, alpha=membrane_alpha(mcfg.surrogate_alpha, mcfg.beta))
        log(f"QAT: {len(model.snn.params)} conv layers, {sum(p.numel() for p in model.snn.params.values())} "
            f"weights; {cfg.clips_per_epoch} training clips per epoch, {len(val_x)} validation clips; {cfg}")
        with torch.no_grad():  # the float model's top-1: the agreement reference
            val_ref = _float_logits(bridge, val_x, cfg.batch_size).argmax(1).cpu()
        record = _train_and_select(model, bridge, data, mcfg, cfg, (val_x, val_y, val_ref), out,
                                   sha256_of(checkpoint), progress=progress, log=log)
        chosen = record["epochs"][record["best_epoch"]]
        record["val_top1"], record["val_agreement"] = chosen["val_top1"], chosen["val_agreement"]
        record["total_s"] = time.perf_counter() - t_start
        write_nir_atomic(deployable_graph(bridge, model, record), out)
    return record


def _trained_on(checkpoint: str | os.PathLike):
    """The checkpoint's model config and the data config it was trained with."""
    from respike_neuro.checkpoint import train_config_of
    from respike_neuro.config import DataConfig

    state = load_checkpoint(checkpoint)
    try:
        mcfg = ModelConfig.from_dict(dict(state["model_config"]), source=f"checkpoint {checkpoint}")
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"checkpoint {checkpoint}: invalid model_config: {err}") from None
    data = DataConfig.from_dict(
        train_config_of(state, checkpoint).get("data") or {}, source=f"checkpoint {checkpoint}"
    )
    return mcfg, data


def _train_and_select(model: QATModel, bridge: HybridBridge, data, mcfg, cfg: QATConfig, val, out: Path,
                      sha: str, *, progress: bool, log) -> dict[str, Any]:
    """Epoch 0 (post-training quantised), then `cfg.epochs` epochs; after each, the best so far is written
    to `out` and at the end loaded back into `model`. val: (clips, labels, the float model's top-1)."""
    val_x, val_y, val_ref = val
    params = model.snn.parameters()
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)
    steps = max(cfg.epochs * math.ceil(cfg.clips_per_epoch / cfg.batch_size), 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1 + math.cos(math.pi * k / steps)))
    record: dict[str, Any] = {
        "config": asdict(cfg), "checkpoint_sha256": sha, "epochs": [],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
    }
    t0 = time.perf_counter()
    acc, pred = _accuracy(model, val_x, val_y, cfg.batch_size)
    agree = float((pred == val_ref).float().mean())
    # model selection: fidelity to the float model when distilling (accuracy breaks ties), else accuracy
    score = (lambda a, g: (g, a)) if cfg.loss != "ce" else (lambda a, g: (a, g))
    best_score = score(acc, agree)
    record["epochs"].append({"epoch": 0, "val_top1": acc, "val_agreement": agree,
                             "eval_s": time.perf_counter() - t0})
    record["best_epoch"] = 0
    log(f"epoch 0 (post-training quantised): val top-1 {acc:.4f}, agreement with float {agree:.4f}")
    write_nir_atomic(deployable_graph(bridge, model, record), out)
    best = {k: p.detach().clone() for k, p in model.snn.params.items()}
    gen = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        clips = _epoch_clips(data, mcfg, epoch, cfg.clips_per_epoch, gen)
        loader = DataLoader(clips, batch_size=cfg.batch_size, shuffle=True, generator=gen)
        loss = _train_epoch(model, bridge, loader, opt, sched, cfg, desc=f"qat epoch {epoch}",
                            progress=progress)
        train_s = time.perf_counter() - t0
        acc, pred = _accuracy(model, val_x, val_y, cfg.batch_size)
        agree = float((pred == val_ref).float().mean())
        rec = {"epoch": epoch, "train_loss": loss, "val_top1": acc, "val_agreement": agree,
               "train_s": train_s, "eval_s": time.perf_counter() - t0 - train_s}
        record["epochs"].append(rec)
        log(f"epoch {epoch}: loss {rec['train_loss']:.4f}, val top-1 {acc:.4f}, agreement {agree:.4f} "
            f"({train_s:.0f} s)")
        if score(acc, agree) > best_score:
            best_score, record["best_epoch"] = score(acc, agree), epoch
            best = {k: p.detach().clone() for k, p in model.snn.params.items()}
            write_nir_atomic(deployable_graph(bridge, model, record), out)
    with torch.no_grad():
        for k, p in model.snn.params.items():
            p.copy_(best[k])
    return record


def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m respike_neuro.qat", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="training checkpoint (its host part stays as it is)")
    p.add_argument("--nir", type=Path, default=None, help="its NIR export (default: export on the fly)")
    p.add_argument("-o", "--out", type=Path, required=True, help="fine-tuned NIR file to write (.nir)")
    d = QATConfig()
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--clips-per-epoch", type=int, default=d.clips_per_epoch)
    p.add_argument("--val-clips", type=int, default=None, help="validation clips for model selection (all)")
    p.add_argument("--calibration-clips", type=int, default=d.calibration_clips)
    p.add_argument("--weight-bits", type=int, default=d.weight_bits,
                   help="weight mantissa bits, 2-8 (default: a fine-tuned NIR's own width, else 8)")
    p.add_argument("--loss", choices=("distill", "ce"), default=d.loss,
                   help="distill: KL to the float model's predictions (default); ce: the labels")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--device", default=d.device, help="auto (cuda when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    def body() -> int:  # every option and path checked before any work (usage errors: exit 2)
        check_input_file(args.checkpoint, "checkpoint")
        if args.nir is not None:
            check_input_file(args.nir, "--nir")
        check_output_file(args.out, "-o", inputs=(args.checkpoint, args.nir), suffixes=("nir",))
        check_number(args.threads, "--threads", minimum=0)
        check_device(args.device)
        try:
            cfg = QATConfig(
                epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                clips_per_epoch=args.clips_per_epoch, val_clips=args.val_clips,
                calibration_clips=args.calibration_clips, loss=args.loss, weight_bits=args.weight_bits,
                seed=args.seed, threads=args.threads, device=args.device,
            )
        except ValueError as err:
            raise UsageError(str(err)) from None
        rec = finetune(args.checkpoint, args.out, nir_path=args.nir, cfg=cfg, progress=not args.no_progress)
        print(f"wrote {args.out}: best epoch {rec['best_epoch']}, val top-1 {rec['val_top1']:.4f}, "
              f"agreement with the float model {rec['val_agreement']:.4f} ({rec['total_s']:.0f} s)")
        return 0

    # CheckpointError, BridgeError and PlanError are ValueErrors
    return guarded(body, errors=(ValueError, OSError), status=1,
                   interrupted=f"interrupted; the best model so far (if any) is in {args.out}")


if __name__ == "__main__":
    sys.exit(main())
