"""Time per training step and peak memory of ReSpike for one configuration.

    python benchmarks/train_step.py --batch 1 --frames 16 --resolution 224 --ann resnet18
    python benchmarks/train_step.py --lif-backend snntorch      # snnTorch's Leaky instead of the fused LIF
    python benchmarks/train_step.py --per-timestep   # the authors' execution, a timestep at a time

Each configuration should run in a fresh process (peak RSS is per process). `--per-timestep`
reproduces how the authors' code executes the same network: every timestep runs the stem, the
stages and the fusions separately (batch of B*N), with stateful neurons carried across the loop,
instead of folding time into the batch.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import resource
import statistics
import sys
import time
from copy import deepcopy

import torch

from respike_neuro.allocator import (
    allocator_for,
    heap_in_use,
    lean_heap_active,
    release_free_heap,
    release_heap_at,
    restart_with_lean_heap,
    restart_with_tcmalloc,
)
from respike_neuro.config import ModelConfig
from respike_neuro.config.run import ALLOCATORS, MEMORY_FORMATS
from respike_neuro.devices import amp_dtype_for, cpu_bf16, memory_format_for
from respike_neuro.models.hybrid import ReSpike, branch_frames
from respike_neuro.models.memory import plain_backward
from respike_neuro.models.neuron import membrane_alpha
from respike_neuro.sgd_in_backward import SGDInBackward


def per_timestep_logits(model: ReSpike, clip: torch.Tensor) -> torch.Tensor:
    """The authors' loop order: for t in timesteps: stem -> stage1 -> fusion1 -> ... (stateful LIFs)."""
    cfg = model.cfg
    b = clip.shape[0]
    key = branch_frames(clip, cfg.stride, cfg.inputs, "ann").flatten(0, 2)
    res = branch_frames(clip, cfg.stride, cfg.inputs, "snn").flatten(0, 1).transpose(0, 1)
    feats = model.encode_ann(key)
    state: dict[int, torch.Tensor] = {}

    def lif(module, x):  # one timestep of a neuron, gradient through the ATan surrogate
        v = state.get(id(module), torch.zeros_like(x))
        v = module.beta * v + x
        spikes = _SpikeFn.apply(v - module.threshold, membrane_alpha(module.alpha, module.beta))
        state[id(module)] = v * (1 - spikes.detach())
        return spikes

    outs = []
    for t in range(res.shape[0]):
        x = model.snn.stem(res[t])
        for k, stage in enumerate(model.snn.stages):
            for block in stage:
                out = block.conv1(lif(block.lif1, x))
                out = block.conv2(lif(block.lif2, out))
                x = out + (x if block.shortcut is None else block.shortcut(x))
            if model.fusions is not None:
                x = model.fuse(k, x, feats[k])
        outs.append(x)
    snn_vec = torch.stack(outs).mean(0).mean((-2, -1))
    return model.classify(feats[-1].mean((-2, -1)), snn_vec).view(b, -1, cfg.num_classes).mean(1)


class _SpikeFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha):
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        a = ctx.alpha
        return grad * (a / 2) / (1 + (torch.pi / 2 * a * x) ** 2), None


def build_model(args: argparse.Namespace, device: torch.device) -> ReSpike:
    cfg = ModelConfig(
        num_classes=101,
        frames=args.frames,
        stride=args.stride,
        resolution=args.resolution,
        ann=args.ann,
        snn_width=args.snn_width,
        lif_backend=args.lif_backend,
        snn_bn_stats=args.snn_bn_stats,
    )
    model = ReSpike(cfg).to(device).train()
    model = model.to(memory_format=memory_format_for(args.memory_format, device, log=None))
    model.checkpoint_activations = args.checkpoint_activations
    return model


def add_size_arguments(p: argparse.ArgumentParser) -> None:
    """The configuration both train_step.py and train_memory.py measure (reference config by default)."""
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--stride", type=int, default=4)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--ann", default="resnet18")
    p.add_argument("--snn-width", type=int, default=64)
    p.add_argument("--snn-bn-stats", default="per_timestep", choices=["per_timestep", "folded"],
                   help="SNN BatchNorm training statistics (per_timestep: the authors')")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_size_arguments(p)
    p.add_argument("--lif-backend", default="fused", choices=["fused", "snntorch"])
    p.add_argument("--per-timestep", action="store_true", help="the authors' execution order")
    p.add_argument("--memory-format", default="auto", choices=MEMORY_FORMATS,
                   help="train.memory_format (auto: channels_last on an x86-64 CPU)")
    p.add_argument("--checkpoint-activations", action="store_true", help="recompute blocks in backward")
    p.add_argument("--plain-autograd", action="store_true",
                   help="spike convs and average pools save what plain torch saves (models/memory.py)")
    p.add_argument("--keep-free-heap", action="store_true",
                   help="no malloc_trim between forward and backward (respike_neuro/allocator.py)")
    p.add_argument("--heap-release-mb", type=float, default=0.0,
                   help="train.heap_release_mb: also trim at stage edges above this much resident waste")
    p.add_argument("--allocator", default="auto", choices=ALLOCATORS,
                   help="train.allocator: the C heap (auto: tcmalloc on an x86-64 CPU where the system has "
                   "it, without --lean-heap; the command restarts itself with it preloaded)")
    p.add_argument("--lean-heap", action="store_true",
                   help="train.lean_heap: restart with glibc's blocks >= 2 MB mapped in huge pages "
                   "(respike_neuro/allocator.py)")
    p.add_argument("--plain-step", action="store_true",
                   help="optimizer.step() after backward, not SGD in it (respike_neuro/sgd_in_backward.py)")
    p.add_argument("--alternate", choices=["plain", "contiguous"],
                   help="odd steps under --plain-autograd (plain) or on a contiguous copy of the model, same "
                   "weights (contiguous), even steps as configured: the difference step against step in "
                   "one process (peak RSS is then the two modes' together)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", action="store_true",
                   help="autocast: fp16 + GradScaler on CUDA; on a CPU bf16 where native, else fp32")
    p.add_argument("--amp-dtype", choices=["fp16", "bf16"],
                   help="--amp's dtype, forced (bf16: no scaler; warns on a CPU without native bf16)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.alternate == "plain" and args.plain_autograd:
        p.error("--alternate plain already runs every other step under --plain-autograd")
    if args.lean_heap and args.allocator == "tcmalloc":
        p.error("--lean-heap is glibc's heap: it needs --allocator glibc or auto")
    if args.alternate == "contiguous" and args.memory_format == "contiguous":
        p.error("--alternate contiguous compares with a contiguous copy: the model must not be contiguous")
    return args


def main(*, restart: bool = False) -> None:
    """`restart`: run as a command, whose process may re-execute itself with another heap."""
    args = parse_args()
    if restart:
        heap, where = allocator_for(args.allocator, torch.device(args.device).type, lean_heap=args.lean_heap)
        if heap == "tcmalloc":
            restart_with_tcmalloc(where)
        if args.lean_heap:
            restart_with_lean_heap()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = build_model(args, device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-4)
    amp_dtype = None  # --amp: train.amp auto's choice; --amp-dtype: forced (implies --amp)
    if args.amp or args.amp_dtype:
        say = lambda line: print(line, file=sys.stderr)  # noqa: E731
        amp_dtype = amp_dtype_for(args.amp_dtype or "auto", device, log=say)
    args.amp = amp_dtype is not None
    amp_dtype = amp_dtype or torch.float32
    scaler = torch.amp.GradScaler(enabled=args.amp and amp_dtype == torch.float16 and device.type == "cuda")
    clip = torch.randn(args.batch, args.frames, 3, args.resolution, args.resolution, device=device)
    labels = torch.randint(0, 101, (args.batch,), device=device)
    models = [(model, opt)]
    if args.alternate == "contiguous":
        copy = deepcopy(model).to(memory_format=torch.contiguous_format)
        models.append((copy, torch.optim.SGD(copy.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-4)))
    times, other_times = [], []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trim = device.type == "cpu" and not args.keep_free_heap and heap_in_use() == "glibc"  # as train.py
    in_backward = not (args.plain_step or scaler.is_enabled())
    with contextlib.ExitStack() as lean:  # as respike_neuro.train: around all steps of an epoch
        if device.type == "cpu" and args.heap_release_mb > 0:
            edges = (m for ms in model.regions().values() for m in ms)
            lean.enter_context(release_heap_at(edges, waste_mb=args.heap_release_mb))
        if in_backward:
            for _, o in models:
                lean.enter_context(SGDInBackward(o))
        warmup = args.warmup + (args.warmup % 2 if args.alternate else 0)  # both modes warmed up
        for step in range(warmup + args.steps):
            other = args.alternate is not None and step % 2 == 1
            plain_now = args.plain_autograd or (other and args.alternate == "plain")
            m, o = models[-1] if other else models[0]
            t0 = time.perf_counter()
            o.zero_grad(set_to_none=True)
            with plain_backward(plain_now), torch.autocast(device.type, dtype=amp_dtype, enabled=args.amp):
                logits = per_timestep_logits(m, clip) if args.per_timestep else m(clip)
                loss = torch.nn.functional.cross_entropy(logits, labels)
                if trim:
                    release_free_heap()
                scaler.scale(loss).backward()
            scaler.step(o)  # after SGDInBackward a no-op: no gradient is left
            scaler.update()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if step >= warmup:
                into = other_times if other else times
                into.append(time.perf_counter() - t0)
    result = {
        "config": vars(args),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}",
        "precision": str(amp_dtype).removeprefix("torch.") if args.amp else "float32",
        "memory_format": str(memory_format_for(args.memory_format, device, log=None)).removeprefix("torch."),
        "cpu_bf16": cpu_bf16()[1],
        "heap": heap_in_use(),
        "lean_heap": lean_heap_active(),
        "s_per_step": sum(times) / len(times),
        "clips_per_s": args.batch / (sum(times) / len(times)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if other_times:  # each alternate step against the step before it
        ratios = [p / t for t, p in zip(times, other_times)]
        result.update(alternate_s_per_step=sum(other_times) / len(other_times),
                      alternate_ratio=statistics.median(ratios),
                      alternate_ratio_range=(min(ratios), max(ratios)))
    if device.type == "cuda":
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["machine"] += f", {torch.cuda.get_device_name()}"
    if args.json:
        print(json.dumps(result))
    else:
        mode = f"time folded, LIF {args.lif_backend}, BN statistics {args.snn_bn_stats}"
        mode += f", {result['memory_format']}, {result['heap']} heap"
        if args.per_timestep:
            mode = "per-timestep (authors' order)"
        print(
            f"{mode}: {result['s_per_step']:.3f} s/step, {result['clips_per_s']:.2f} clips/s, "
            f"peak RSS {result['peak_rss_mb']:.0f} MB  [{result['machine']}]"
        )
        if other_times:
            lo, hi = result["alternate_ratio_range"]
            what = "plain autograd" if args.alternate == "plain" else "a contiguous copy"
            print(f"{what}, alternating: {result['alternate_s_per_step']:.3f} s/step, "
                  f"{result['alternate_ratio']:.3f}x the step above (median of {len(other_times)} pairs, "
                  f"{lo:.3f}-{hi:.3f})")


if __name__ == "__main__":
    main(restart=True)
