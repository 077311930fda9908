#!/usr/bin/env python
"""Lava speed per ReSpike stage: ms per timestep with Lava's stock Conv models, with the fast models of
respike_neuro.sim (dense GEMM only, and with the sparse spike-scatter path), and PyTorch CPU running the
same convs + LIF per timestep (in a separate process, so Lava's forked children never see torch).

Each stage is a hybrid-style sub-graph stage{k}_in -> blocks -> stage{k}_out with random weights at the
widths/sizes of an MS-ResNet-18 scaled by --input-hw/--width. The Lava figure is the wall time of a whole
run divided by its Lava steps (all processes of the stage: injector, relays, convs, LIFs, delays,
extractors) divided by its logical timesteps (4 pipelined segments per call, so the pipeline fill and
drain steps are paid for), after a warm-up run; PyTorch is one eager forward per timestep, batch 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
SEGMENTS = 4  # segments per Lava call (pipelined back to back, as a 16-frame clip at stride 4)


def stage_configs(input_hw: int, width: int, stages: list[int]) -> list[dict]:
    out = []
    for k in stages:
        hw_in = input_hw // 2 // (2 ** max(k - 2, 0))
        c_in = width * 2 ** max(k - 2, 0)
        out.append(
            {
                "stage": k,
                "c_in": c_in,
                "channels": width * 2 ** (k - 1),
                "hw": hw_in,
                "stride": 1 if k == 1 else 2,
            }
        )
    return out


def lava_ms_per_step(
    graph, timesteps: int, fast: bool, sparse: float, seed: int, record: bool = False, mode: str = "float"
) -> tuple[float, int, dict]:
    from respike_neuro.sim.runtime import LavaSpikingBranch

    with LavaSpikingBranch(
        graph, mode=mode, fast_models=fast, timesteps=timesteps, record_spikes=record, sparse_threshold=sparse
    ) as br:
        port = br.input_ports[0]
        x = np.random.default_rng(seed).normal(size=(SEGMENTS * timesteps,) + br.plan.units[port].shape) * 1.5
        br.run({port: x[:timesteps]})  # warm-up: first steps build kernels
        res = br.run({port: x}, n_segments=SEGMENTS)
    # per logical timestep: the pipeline fill/drain steps of the call are included in the cost
    return 1e3 * res.timings["wall_s"] / (SEGMENTS * timesteps), int(res.timings["steps"]), res.spike_rates()


def numpy_ms_per_step(graph, timesteps: int, sparse: float, seed: int) -> float:
    """The same convs + LIF with the fast models' numpy kernels in one process (no Lava messaging): the
    compute floor of the fast models."""
    from respike_neuro.sim.executor import run_plan
    from respike_neuro.sim.plan import build_plan

    plan = build_plan(graph)
    port = plan.inputs[0]
    x = np.random.default_rng(seed).normal(size=(timesteps,) + plan.units[port].shape) * 1.5
    times = []
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # like each Lava ProcessModel: one BLAS thread
        for _ in range(6):
            t0 = time.perf_counter()
            run_plan(plan, {port: x}, timesteps, sparse_threshold=sparse)
            times.append(time.perf_counter() - t0)
    return 1e3 * min(times[1:]) / timesteps


def cpu_breakdown(graph, timesteps: int, mode: str, sparse: float) -> dict[str, dict]:
    """CPU time each ProcessModel class spends per call of its run_spk (process_time, so time blocked on
    a port does not count), mean over its processes: where a stage's time goes inside Lava. The run_spk
    methods are wrapped here before Lava forks its processes; each process writes its totals to a file."""
    import glob
    import shutil

    from lava.magma.core.model.py.model import PyLoihiProcessModel

    from respike_neuro.sim import mapping

    out = tempfile.mkdtemp(prefix="lava_breakdown_")
    classes = {v for v in vars(mapping).values()
               if isinstance(v, type) and issubclass(v, PyLoihiProcessModel)}
    saved = {c: c.__dict__.get("run_spk") for c in classes}

    def wrap(cls):
        inner = cls.run_spk

        def run_spk(self):
            t0 = time.process_time()
            inner(self)
            acc = self.__dict__.setdefault("_cpu_breakdown", [0.0, 0])
            acc[0] += time.process_time() - t0
            acc[1] += 1
            with open(os.path.join(out, f"{cls.__name__}.{os.getpid()}"), "w") as f:
                json.dump(acc, f)

        return run_spk

    try:
        for c in classes:
            c.run_spk = wrap(c)
        lava_ms_per_step(graph, timesteps, True, sparse, 0, mode=mode)
        rows: dict[str, dict] = {}
        for path in glob.glob(os.path.join(out, "*")):
            name = os.path.basename(path).rsplit(".", 1)[0]
            with open(path) as f:
                cpu_s, calls = json.load(f)
            r = rows.setdefault(name, {"processes": 0, "cpu_s": 0.0, "calls": 0})
            r["processes"] += 1
            r["cpu_s"] += cpu_s
            r["calls"] += calls
        for r in rows.values():
            r["cpu_ms_per_call"] = 1e3 * r["cpu_s"] / r["calls"]
        return rows
    finally:
        for c, m in saved.items():
            if m is None:
                del c.run_spk
            else:
                c.run_spk = m
        shutil.rmtree(out, ignore_errors=True)


def torch_worker(nir_path: str, timesteps: int, threads: int) -> None:
    """Same-step PyTorch execution of the stage graph; prints ms per timestep as JSON."""
    import nir
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    g = nir.read(nir_path)
    beta = float(g.metadata["beta"])
    preds = {k: [s for s, d in g.edges if d == k] for k in g.nodes}
    order, seen = [], set()

    def visit(k):
        if k not in seen:
            seen.add(k)
            for p in preds[k]:
                visit(p)
            order.append(k)

    for k in g.nodes:
        visit(k)
    prm = {}
    for k, n in g.nodes.items():
        t = type(n).__name__
        if t == "Conv2d":
            prm[k] = (
                torch.tensor(n.weight, dtype=torch.float32),
                torch.tensor(n.bias, dtype=torch.float32),
                int(np.atleast_1d(n.stride)[0]),
                int(np.atleast_1d(n.padding)[0]),
            )
        elif t == "LIF":
            prm[k] = float(np.asarray(n.v_threshold).reshape(-1)[0])
    inp = next(k for k, n in g.nodes.items() if type(n).__name__ == "Input")
    shape = tuple(int(s) for s in np.asarray(g.nodes[inp].input_type["input"]).reshape(-1))
    x = torch.randn((timesteps, 1) + shape) * 1.5

    def run():
        state = {k: 0.0 for k in prm if isinstance(prm[k], float)}
        for t in range(timesteps):
            val = {}
            for k in order:
                n = g.nodes[k]
                tn = type(n).__name__
                if tn == "Input":
                    val[k] = x[t]
                    continue
                a = sum(val[p] for p in preds[k])
                if tn == "Conv2d":
                    w, b, s, p = prm[k]
                    val[k] = F.conv2d(a, w, b, stride=s, padding=p)
                elif tn == "AvgPool2d":
                    val[k] = F.avg_pool2d(a, 2)
                elif tn == "LIF":
                    v = beta * state[k] + a
                    spk = (v > prm[k]).float()
                    state[k] = v * (1 - spk)
                    val[k] = spk
                else:
                    val[k] = a
        return val

    with torch.no_grad():
        times = []
        for _ in range(12):  # best of 12 after 3 warm-up runs: eager PyTorch at batch 1 is noisy
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        ms = 1e3 * min(times[3:]) / timesteps
    print(json.dumps({"ms_per_step": ms, "threads": threads, "torch": torch.__version__}))


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input-hw", type=int, default=64, help="frame size; stage k runs at hw/2/2^(k-1)")
    ap.add_argument("--width", type=int, default=32, help="stage-1 channels (ResNet-18: 64)")
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--stages", default="1,2,3,4")
    ap.add_argument("--timesteps", type=int, default=3, help="timesteps per segment (T)")
    ap.add_argument("--skip-stock", action="store_true", help="skip Lava's stock models (slow)")
    ap.add_argument("--torch-threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--breakdown", action="store_true",
                    help="also print the CPU time per call of each ProcessModel class (float and fixed)")
    ap.add_argument("--torch-worker", nargs=2, metavar=("NIR", "T"), help=argparse.SUPPRESS)
    return ap


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.torch_worker:
        torch_worker(args.torch_worker[0], int(args.torch_worker[1]), args.torch_threads)
        return 0
    from respike_neuro.sim.demo_graphs import build_stage_graph

    stages = [int(s) for s in args.stages.split(",")]
    _print_header(args)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for cfg in stage_configs(args.input_hw, args.width, stages):
            g = build_stage_graph(
                cfg["stage"],
                c_in=cfg["c_in"],
                channels=cfg["channels"],
                hw=(cfg["hw"], cfg["hw"]),
                blocks=args.blocks,
                stride=cfg["stride"],
                timesteps=args.timesteps,
                seed=cfg["stage"],
            )
            row = measure_stage(g, cfg, args, Path(tmp))
            rows.append(row)
            _print_row(row)
    if args.breakdown:
        _print_breakdown(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


def measure_stage(g, cfg: dict, args: argparse.Namespace, tmp: Path) -> dict:
    """One stage graph under every engine of the table: Lava stock/fast/sparse/recording/fixed, the numpy
    kernels, and PyTorch in a subprocess (its own thread count)."""
    import nir

    stock = float("nan") if args.skip_stock else lava_ms_per_step(g, args.timesteps, False, 0.0, 0)[0]
    dense, steps, _ = lava_ms_per_step(g, args.timesteps, True, 0.0, 0)
    sparse_rec, _, rates = lava_ms_per_step(g, args.timesteps, True, 0.1, 0, record=True)
    sparse, _, _ = lava_ms_per_step(g, args.timesteps, True, 0.1, 0)
    fixed, _, _ = lava_ms_per_step(g, args.timesteps, True, 0.1, 0, mode="fixed")
    kernels_ms = numpy_ms_per_step(g, args.timesteps, 0.1, 0)
    path = tmp / f"s{cfg['stage']}.nir"
    nir.write(str(path), g)
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--torch-worker",
            str(path),
            str(args.timesteps),
            "--torch-threads",
            str(args.torch_threads),
        ],
        capture_output=True,
        text=True,
    )
    torch_ms = (
        json.loads(out.stdout.strip().splitlines()[-1])["ms_per_step"]
        if out.returncode == 0
        else float("nan")
    )
    row = dict(
        cfg,
        stock_ms=stock,
        fast_dense_ms=dense,
        fast_sparse_ms=sparse,
        fast_sparse_recording_ms=sparse_rec,
        fast_sparse_fixed_ms=fixed,
        numpy_kernels_ms=kernels_ms,
        torch_ms=torch_ms,
        lava_steps=steps,
        mean_spike_rate=float(np.mean(list(rates.values()))),
    )
    if args.breakdown:
        row["cpu_breakdown"] = {
            m: cpu_breakdown(g, args.timesteps, m, 0.1) for m in ("float", "fixed")
        }
    return row


def _print_header(args: argparse.Namespace) -> None:
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"input {args.input_hw}^2, width {args.width}, {args.blocks} blocks/stage, T={args.timesteps}"
    )
    print(
        "ms per logical timestep. stock/fast: whole stage in Lava (float), spike recording off; +rec:\n"
        "fast+sparse with a spike recorder per LIF; fixed: fast+sparse in Loihi 2 fixed point; numpy: fast\n"
        "float kernels in one process (no Lava messaging); torch: eager float32, batch 1"
    )
    print(
        f"{'stage':>5} {'C_in->C':>9} {'HxW':>7} {'stock':>8} {'fast':>7} {'fast+sp':>7} {'+rec':>7} "
        f"{'fixed':>7} {'numpy':>7} {'torch':>7} {'x stock':>7} {'/torch':>6} {'fx/tor':>6} {'np/tor':>6}  "
        "spike rate"
    )


def _print_row(row: dict) -> None:
    stock, dense, sparse = row["stock_ms"], row["fast_dense_ms"], row["fast_sparse_ms"]
    sparse_rec, fixed = row["fast_sparse_recording_ms"], row["fast_sparse_fixed_ms"]
    kernels_ms, torch_ms = row["numpy_kernels_ms"], row["torch_ms"]
    best = min(dense, sparse)
    print(
        f"{row['stage']:>5} {row['c_in']:>4}->{row['channels']:<4} {row['hw']:>3}x{row['hw']:<3} "
        f"{stock:8.1f} {dense:7.2f} {sparse:7.2f} {sparse_rec:7.2f} {fixed:7.2f} {kernels_ms:7.2f} "
        f"{torch_ms:7.2f} "
        f"{stock / best:7.1f} {best / torch_ms:6.2f} {fixed / torch_ms:6.2f} "
        f"{kernels_ms / torch_ms:6.2f}  "
        f"{row['mean_spike_rate']:.3f}"
    )


def _print_breakdown(rows: list[dict]) -> None:
    for row in rows:
        print(f"stage {row['stage']}, fast+sparse: CPU ms per run_spk call (mean over the xN processes)")
        for mode, table in row["cpu_breakdown"].items():
            cells = sorted(table.items(), key=lambda kv: -kv[1]["cpu_ms_per_call"] * kv[1]["processes"])
            print(f"  {mode:<5} " + ", ".join(f"{k} x{v['processes']} {v['cpu_ms_per_call']:.2f}"
                                            for k, v in cells))


if __name__ == "__main__":
    from respike_neuro.cli import guarded

    # Ctrl-C: one line and 130; SIGTERM while Lava runs: one line and 143 (Lava stopped, nothing left)
    sys.exit(guarded(main, errors=()))
