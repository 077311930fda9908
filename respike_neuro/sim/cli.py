"""`sim/run_lava.py`: run a ReSpike spiking branch (NIR) alone in Lava and print spikes, rates, timings.

Torch-free on purpose (Lava forks its processes): built-in residual inputs are seeded N(0,1) frames,
recorded inputs come from an .npz mapping port name -> (N*T, C, H, W) or (N, T, C, H, W).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from respike_neuro.cli import (
    ArgumentParser,
    UsageError,
    check_input_file,
    check_memory,
    check_number,
    check_output_file,
    guarded,
)
from respike_neuro.engines import MODES, RUNTIME_BACKENDS, backend_help
from respike_neuro.fileio import write_text_atomic

MAX_TIMESTEPS = 10_000  # per segment; the model uses a handful (one per residual frame)
MAX_LAVA_STEPS = 1_000_000  # segments x timesteps: hours of Lava CPU time already


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="run_lava.py", description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?", help="NIR file (HDF5) of the spiking branch")
    p.add_argument(
        "--demo", action="store_true", help="use a small built-in contract graph instead of a file"
    )
    p.add_argument(
        "--mode", choices=MODES, default="float", help="Lava arithmetic (default float)"
    )
    p.add_argument(
        "--backend", choices=RUNTIME_BACKENDS, default="cpu", help=backend_help(RUNTIME_BACKENDS),
    )
    p.add_argument(
        "--segments", type=int, default=None, help="segments to run (default: 1, or from --inputs)"
    )
    p.add_argument(
        "--timesteps", type=int, default=None, help="timesteps per segment (default: graph metadata)"
    )
    p.add_argument("--inputs", type=Path, default=None, help=".npz: port name -> array (N*T, C, H, W)")
    p.add_argument(
        "--host-identity",
        action="store_true",
        help="feed stage{k}_out straight back as stage{k+1}_in where no recorded input is given",
    )
    p.add_argument(
        "--stock-models", action="store_true", help="Lava's stock Conv models (slow) instead of fast"
    )
    p.add_argument("--seed", type=int, default=0, help="seed for built-in inputs")
    p.add_argument("--json", type=Path, default=None, help="also write rates, outputs stats, timings as JSON")
    return p


def _load_inputs(path: Path, ports: dict[str, tuple], timesteps: int) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise ValueError(f"--inputs {str(path)!r} does not exist")
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise ValueError(f"--inputs {str(path)!r} is not a readable .npz ({type(exc).__name__})") from None
    out = {}
    for name in npz.files:
        if name not in ports:
            raise ValueError(
                f"--inputs has array {name!r}, which is not an input port of the graph {list(ports)}"
            )
        a = np.asarray(npz[name], dtype=np.float64)
        if a.ndim == 5:
            a = a.reshape((-1,) + a.shape[2:])
        if a.ndim != 4 or a.shape[1:] != ports[name] or a.shape[0] % timesteps:
            raise ValueError(
                f"--inputs {name!r} has shape {npz[name].shape}; expected (N*{timesteps}, "
                f"{', '.join(map(str, ports[name]))}) or (N, {timesteps}, ...)"
            )
        out[name] = a
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return guarded(lambda: _run(args), errors=(ValueError, TypeError, RuntimeError, OSError), status=1)


def _check_args(args) -> None:
    """Every option and path before Lava starts (usage errors, exit 2)."""
    if args.demo == bool(args.model):
        raise UsageError("give a NIR file or --demo (not both)")
    if args.model:
        check_input_file(args.model, "model")
    if args.inputs is not None:
        check_input_file(args.inputs, "--inputs")
    check_number(args.segments, "--segments", minimum=1)
    check_number(args.timesteps, "--timesteps", minimum=1, maximum=MAX_TIMESTEPS)
    if args.segments and args.timesteps and args.segments * args.timesteps > MAX_LAVA_STEPS:
        raise UsageError(
            f"--segments {args.segments} x --timesteps {args.timesteps}: "
            f"more than {MAX_LAVA_STEPS:,} Lava steps"
        )
    if args.json is not None:
        check_output_file(args.json, "--json", inputs=(args.model, args.inputs))


def _segment_inputs(br, args) -> tuple[dict[str, np.ndarray], int]:
    """The inputs of the run, (segments x T, C, H, W) per port, and the number of segments: --inputs cut
    to --segments, the rest drawn from N(0, 1) (host ports: left to the identity host, --host-identity)."""
    T = br.timesteps
    ports = {p: br.plan.units[p].shape for p in br.input_ports}
    data = _load_inputs(args.inputs, ports, T) if args.inputs else {}
    n_seg = args.segments or (len(next(iter(data.values()))) // T if data else 1)
    for k, v in list(data.items()):
        if len(v) < n_seg * T:
            raise ValueError(f"--inputs {k!r} has {len(v) // T} segments, --segments asks for {n_seg}")
        data[k] = v[: n_seg * T]
    if n_seg * T > MAX_LAVA_STEPS:
        raise UsageError(f"{n_seg} segments x {T} timesteps: more than {MAX_LAVA_STEPS:,} Lava steps")
    rng = np.random.default_rng(args.seed)
    missing = [p for p in br.input_ports if p not in data]
    check_memory(sum(8.0 * n_seg * T * float(np.prod(ports[p])) for p in missing), "the built-in inputs")
    for p in br.input_ports:
        if p in data:
            continue
        if p == "residual_in" or p not in br.plan.feeds:
            data[p] = rng.normal(size=(n_seg * T,) + ports[p])
        elif not args.host_identity:
            raise ValueError(f"host port {p!r} needs recorded data (--inputs) or --host-identity")
    return data, n_seg


def _print_result(res, n_seg: int, T: int, fixed) -> None:
    from respike_neuro.sim.runtime import describe_quantization

    print(
        f"segments {n_seg} x T={T}: {int(res.timings['steps'])} Lava steps; "
        f"startup {res.timings['startup_s']:.2f} s;"
        f" {res.timings['ms_per_step']:.1f} ms/step; run {res.timings['wall_s']:.2f} s"
    )
    print("spike rates per LIF layer (fraction of neurons per timestep):")
    for k, r in res.spike_rates().items():
        per_t = res.spikes[k].reshape(res.spikes[k].shape[0], -1).mean(axis=1)
        print(f"  {k:28s} {r:.4f}   per t: " + " ".join(f"{x:.3f}" for x in per_t[: 2 * T]))
    for o, v in res.outputs.items():
        print(
            f"output {o}: shape {v.shape[1:]}, mean {v.mean():+.4f}, std {v.std():.4f}, "
            f"max|x| {np.abs(v).max():.4f}"
        )
    if fixed is not None:
        print(fixed.summary())
        print(describe_quantization(res.quantization))


def _run(args) -> int:
    from respike_neuro.sim.runtime import LavaSpikingBranch

    _check_args(args)
    if args.demo:
        from respike_neuro.sim.demo_graphs import build_contract_graph

        graph = build_contract_graph(
            channels=(8, 16), blocks=(2, 1), input_hw=(32, 32), hybrid=True, seed=args.seed
        )
        name = "built-in demo graph (hybrid, 2 stages)"
    else:
        graph, name = Path(args.model), args.model
    br = LavaSpikingBranch(
        graph,
        mode=args.mode,
        backend=args.backend,
        fast_models=not args.stock_models,
        timesteps=args.timesteps,
    )
    with br:
        T = br.timesteps
        data, n_seg = _segment_inputs(br, args)
        host = None
        if any(p not in data for p in br.input_ports):

            def host(stage, t, feat):
                return feat

        print(
            f"graph: {name}; mode {args.mode}; {len(br.plan.units)} units -> "
            f"{br.n_processes} Lava processes"
        )
        print("port latency (Lava steps): " + ", ".join(f"{k}={v}" for k, v in br.port_latency.items()))
        res = br.run(data, host=host, n_segments=n_seg)
    _print_result(res, n_seg, T, br.fixed)
    if args.json:
        write_text_atomic(
            args.json,
            json.dumps(
                {
                    "rates": res.spike_rates(),
                    "timings": res.timings,
                    "latency": res.latency,
                    "quantization": res.quantization,
                },
                indent=1,
            )
        )
    return 0
