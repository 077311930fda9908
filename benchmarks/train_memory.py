"""Where the training memory of one ReSpike step goes.

    python benchmarks/train_memory.py                     # reference config: 1 x 16 x 224^2, ResNet-18, s = 4
    python benchmarks/train_memory.py --frames 32 --batch 2 --json

Prints, for one SGD step in fp32:
- the process's resident memory at each phase (after import + model, after the forward pass, the
  peak of the backward pass, after the optimizer step), read from /proc/self/status (VmRSS; the
  peak VmHWM is reset between phases through /proc/self/clear_refs where the kernel allows it);
- parameters, gradients and SGD momentum;
- the tensors the autograd graph holds for the backward pass after the forward pass, by region
  (ANN stem/stages, SNN stem/stages, fusion k, head) and by kind (the backward node that saved
  it, e.g. ConvolutionBackward0 for a conv input, _LIFSequenceBackward for a membrane), each
  storage counted once, and how many of the bytes convs keep as their input are float tensors of
  exactly 0/1 (spikes: 1 bit would do).

The graph is read by walking it from the loss: every node's `_saved_*` tensors (builtin ops) or
`saved_tensors` (custom Functions); regions are given by forward hooks that tag each new node
with the module that created it.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
from collections import defaultdict
from pathlib import Path

import torch
import train_step  # benchmarks/train_step.py, beside this script

from respike_neuro.allocator import allocated_mb
from respike_neuro.models.hybrid import ReSpike
from respike_neuro.models.memory import plain_backward

MB = 2**20


def proc_status() -> dict[str, float]:
    """VmRSS and VmHWM in MB (0 where /proc is not there)."""
    out = {"rss_mb": 0.0, "hwm_mb": 0.0}
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return out
    for key, name in (("VmRSS", "rss_mb"), ("VmHWM", "hwm_mb")):
        m = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
        if m:
            out[name] = int(m.group(1)) / 1024
    return out


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs); False if not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _walk(roots, stop):
    """Nodes reachable from `roots` (grad_fns), not descending into nodes for which stop(node)."""
    seen, todo, out = set(), [r for r in roots if r is not None], []
    while todo:
        node = todo.pop()
        if node in seen or stop(node):
            continue
        seen.add(node)
        out.append(node)
        todo.extend(n for n, _ in node.next_functions if n is not None)
    return out


def _grad_fns(output) -> list:
    tensors = output if isinstance(output, (list, tuple)) else [output]
    return [t.grad_fn for t in tensors if isinstance(t, torch.Tensor) and t.grad_fn is not None]


def tag_regions(model: ReSpike) -> tuple[dict, list]:
    """Forward hooks that map each new autograd node to the region module that created it."""
    region_of: dict = {}
    handles = []

    def claim(output, name):
        for node in _walk(_grad_fns(output), stop=lambda n: n in region_of):
            region_of[node] = name

    for name, modules in model.regions().items():
        for module in modules:
            handles.append(module.register_forward_hook(lambda _m, _i, out, _n=name: claim(out, _n)))
    if model.snn is not None:
        stem = model.snn.forward_stem_spikes  # the stem and stage 1's first LIF

        def tagged_stem(frames):
            x, spikes = stem(frames)
            claim(x, "snn.stem")
            claim(spikes, "snn.stem")
            return x, spikes

        model.snn.forward_stem_spikes = tagged_stem
    return region_of, handles


def saved_tensors(node) -> list[torch.Tensor]:
    if hasattr(node, "saved_tensors"):  # custom autograd.Function
        try:
            return [t for t in node.saved_tensors if isinstance(t, torch.Tensor)]
        except RuntimeError:
            return []
    out = []
    for attr in dir(node):
        if not attr.startswith("_saved_"):
            continue
        try:
            value = getattr(node, attr)
        except RuntimeError:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        out += [v for v in values if isinstance(v, torch.Tensor)]
    return out


def saved_breakdown(loss: torch.Tensor, region_of: dict, params: list[torch.Tensor]) -> dict:
    """Bytes the graph keeps for backward, by region and by kind; each storage counted once."""
    param_storages = {p.untyped_storage().data_ptr() for p in params}
    seen: set[int] = set()
    by_region: dict[str, float] = defaultdict(float)
    by_kind: dict[str, float] = defaultdict(float)
    by_region_kind: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    binary = 0.0
    for node in _walk([loss.grad_fn], stop=lambda n: False):
        kind = type(node).__name__
        region = region_of.get(node, "loss/glue")
        for t in saved_tensors(node):
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr == 0 or ptr in seen or ptr in param_storages:
                continue
            seen.add(ptr)
            nbytes = storage.nbytes() / MB
            by_region[region] += nbytes
            by_kind[kind] += nbytes
            by_region_kind[region][kind] += nbytes
            spike_input = kind == "ConvolutionBackward0" and t.is_floating_point() and t.numel() > 0
            if spike_input and bool(((t == 0) | (t == 1)).all()):
                binary += nbytes
    return {
        "total_mb": sum(by_region.values()),
        "binary_0_1_mb": binary,
        "by_region_mb": dict(by_region),
        "by_kind_mb": dict(sorted(by_kind.items(), key=lambda kv: -kv[1])),
        "by_region_kind_mb": {r: dict(k) for r, k in by_region_kind.items()},
    }


def build(args: argparse.Namespace) -> tuple[ReSpike, torch.Tensor, torch.Tensor]:
    """The model train_step.py times (fused LIF, train.memory_format auto, no block checkpointing), a
    clip and labels."""
    plain = argparse.Namespace(
        **vars(args), lif_backend="fused", memory_format="auto", checkpoint_activations=False
    )
    model = train_step.build_model(plain, torch.device("cpu"))
    clip = torch.randn(args.batch, args.frames, 3, args.resolution, args.resolution)
    labels = torch.randint(0, 101, (args.batch,))
    return model, clip, labels


def measure(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, clip, labels = build(args)
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=1e-4, momentum=0.9, weight_decay=1e-4)
    param_mb = sum(p.numel() * p.element_size() for p in params) / MB
    # one untimed step first, so that the allocator and the momentum buffers are in place
    torch.nn.functional.cross_entropy(model(clip), labels).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    phases = {"after warm-up step (model, momentum, allocator)": proc_status()}
    resettable = reset_peak()
    before = allocated_mb()
    loss = torch.nn.functional.cross_entropy(model(clip), labels)
    held = None if before is None else allocated_mb() - before
    phases["forward"] = proc_status()
    reset_peak()
    loss.backward()
    phases["backward"] = proc_status()
    del loss
    reset_peak()
    opt.step()
    opt.zero_grad(set_to_none=True)
    phases["optimizer step"] = proc_status()
    # the breakdown reads every saved tensor, which runs the recomputations early: a pass of its own
    region_of, handles = tag_regions(model)
    loss = torch.nn.functional.cross_entropy(model(clip), labels)
    for h in handles:
        h.remove()
    graph = saved_breakdown(loss, region_of, params)
    graph["held_mb"] = held
    loss.backward()
    opt.zero_grad(set_to_none=True)
    return {
        "config": vars(args),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}",
        "peak_per_phase_resettable": resettable,
        "phases_mb": phases,
        "parameters_mb": param_mb,
        "parameters_grads_momentum_mb": 3 * param_mb,
        "saved_for_backward": graph,
    }


def print_report(r: dict) -> None:
    g = r["saved_for_backward"]
    config = {k: r["config"][k] for k in ("batch", "frames", "resolution", "ann")}
    print(f"[{r['machine']}]  config: {json.dumps(config)}")
    print(
        f"parameters {r['parameters_mb']:.0f} MB; + gradients + SGD momentum = "
        f"{r['parameters_grads_momentum_mb']:.0f} MB"
    )
    print("resident memory by phase (MB):  rss   peak within phase")
    for name, s in r["phases_mb"].items():
        print(f"  {name:<50} {s['rss_mb']:6.0f} {s['hwm_mb']:6.0f}")
    if g["held_mb"] is not None:
        print(f"held for the backward pass after the forward pass (malloc's count): {g['held_mb']:.0f} MB")
    print(
        f"saved for backward, as the graph hands them out: {g['total_mb']:.0f} MB "
        f"(of which conv inputs of exactly-0/1 floats: {g['binary_0_1_mb']:.0f} MB); this counts\n"
        "  what is recomputed in backward (the stems, BN1 + LIF2 of each block) as if it were kept"
    )
    print("  by region:")
    for region, mb in g["by_region_mb"].items():
        ranked = sorted(g["by_region_kind_mb"][region].items(), key=lambda kv: -kv[1])
        kinds = ", ".join(f"{k} {v:.0f}" for k, v in ranked if v >= 1)
        print(f"    {region:<12} {mb:7.1f}   ({kinds})")
    print("  by kind (the backward node that keeps it):")
    for kind, mb in g["by_kind_mb"].items():
        if mb >= 0.5:
            print(f"    {kind:<36} {mb:7.1f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    train_step.add_size_arguments(p)
    p.add_argument("--plain-autograd", action="store_true",
                   help="spike convs and average pools save what plain torch saves (models/memory.py)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    with plain_backward(args.plain_autograd):
        result = measure(args)
    if args.json:
        print(json.dumps(result))
    else:
        print_report(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
