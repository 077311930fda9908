"""Our training step against the authors' code, alternately in one call, with ratios and the CPU's flags.

    python benchmarks/vs_authors.py --authors-repo /tmp/authors --deps /tmp/authors/deps
    python benchmarks/vs_authors.py --authors-repo ... --grid --plot growth.png --json growth.json
    python benchmarks/vs_authors.py --authors-repo ... --ours-args "--plain-autograd"

Each run is a fresh process (peak RSS is per process): benchmarks/train_step.py (ours) and
benchmarks/authors_train_step.py (theirs, from their checkout) take turns, ours then theirs, for
--rounds rounds, so that a machine whose speed drifts affects both alike. Printed per configuration:
the median s/step and peak RSS of each, and the median of the per-round ratios ours/theirs.
--grid runs frames 8/16/32 x batch 1/2/4 (growth with clip length and batch); --plot draws it.
Both run in fp32 with the same thread count (OMP_NUM_THREADS, set for both children).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

from respike_neuro.allocator import TCMALLOC_HINT, preload_env, tcmalloc_library

HERE = Path(__file__).resolve().parent
SHOWN_FLAGS = (
    "avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile", "bf16", "sve"
)


def machine_line() -> str:
    """CPU model, core count, the SIMD/bf16 flags that matter here, torch's kernel level and bf16 verdict."""
    import torch

    from respike_neuro.devices import cpu_bf16, cpu_flags

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "cpu part")):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = cpu_flags()
    shown = " ".join(f for f in SHOWN_FLAGS if f in flags) or "none of " + "/".join(SHOWN_FLAGS)
    capability = torch.backends.cpu.get_cpu_capability()
    return (
        f"{model}, {os.cpu_count()} CPUs; flags: {shown}; torch {torch.__version__} kernels {capability}; "
        f"{cpu_bf16(flags)[1]}"
    )


def run_one(cmd: list[str], threads: int, timeout: float, preload: str | None = None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if preload:
        env = preload_env(preload, env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), env.get("PYTHONPATH")]))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1])


def compare(args: argparse.Namespace, frames: int, batch: int) -> dict:
    common = ["--frames", str(frames), "--batch", str(batch), "--resolution", str(args.resolution),
              "--stride", str(args.stride), "--steps", str(args.steps), "--warmup", str(args.warmup),
              "--json"]
    ours = [sys.executable, str(HERE / "train_step.py"), *common, "--threads", str(args.threads),
            "--device", "cpu", *shlex.split(args.ours_args)]
    theirs = [sys.executable, str(HERE / "authors_train_step.py"), *common,
              "--authors-repo", args.authors_repo]
    if args.deps:
        theirs += ["--deps", args.deps]
    runs: dict[str, list[dict]] = {"ours": [], "authors": []}
    for _ in range(args.rounds):
        runs["ours"].append(run_one(ours, args.threads, args.timeout))
        runs["authors"].append(run_one(theirs, args.threads, args.timeout, args.authors_preload))
    row: dict = {"frames": frames, "batch": batch}
    for key in ("s_per_step", "peak_rss_mb"):
        for side in runs:
            row[f"{side}_{key}"] = statistics.median(r[key] for r in runs[side])
        row[f"ratio_{key}"] = statistics.median(
            a[key] / b[key] for a, b in zip(runs["ours"], runs["authors"], strict=True)
        )
    row["ours_memory_format"] = runs["ours"][0].get("memory_format")
    row["ours_heap"] = runs["ours"][0].get("heap")
    row["authors_heap"] = "tcmalloc" if args.authors_preload else "glibc"
    row["runs"] = runs
    return row


def print_row(row: dict) -> None:
    r = row
    print(
        f"{r['frames']:>6} {r['batch']:>5} | {r['ours_s_per_step']:7.2f} {r['authors_s_per_step']:7.2f} "
        f"{r['ratio_s_per_step']:6.2f}x | {r['ours_peak_rss_mb']:7.0f} {r['authors_peak_rss_mb']:7.0f} "
        f"{r['ratio_peak_rss_mb']:6.2f}x  (ours {r.get('ours_memory_format')}, {r.get('ours_heap')} heap; "
        f"authors {r.get('authors_heap')} heap)",
        flush=True,
    )


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "peak_rss_mb", "peak RSS (MB)"), (axes[1], "s_per_step", "s / step")):
        for batch in sorted({r["batch"] for r in rows}):
            sel = sorted((r for r in rows if r["batch"] == batch), key=lambda r: r["frames"])
            x = [r["frames"] for r in sel]
            (line,) = ax.plot(x, [r[f"ours_{key}"] for r in sel], "o-", label=f"ours, batch {batch}")
            ax.plot(x, [r[f"authors_{key}"] for r in sel], "s--", color=line.get_color(),
                    label=f"authors, batch {batch}")
        ax.set_xlabel("frames per clip")
        ax.set_ylabel(label)
        ax.set_xticks(sorted({r["frames"] for r in rows}))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("ReSpike training step, fp32 CPU: ours (solid) vs the authors' code (dashed)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--authors-repo", required=True, help="checkout of GinnyXiao/ReSpike")
    p.add_argument("--deps", default=None, help="folder holding spikingjelly 0.0.0.0.14 and einops")
    p.add_argument("--frames", type=int, nargs="+", default=[16])
    p.add_argument("--batch", type=int, nargs="+", default=[1])
    p.add_argument("--grid", action="store_true", help="frames 8 16 32 x batch 1 2 4")
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--stride", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3, help="ours/theirs pairs per configuration")
    p.add_argument("--ours-args", default="", help="extra options for train_step.py (one string)")
    p.add_argument("--authors-allocator", choices=["glibc", "tcmalloc"], default="glibc",
                   help="the authors' code on glibc's malloc (as it runs) or with tcmalloc preloaded, as "
                   "ours is by default (train.allocator)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    p.add_argument("--json", help="write the rows (every run included) here")
    p.add_argument("--plot", help="draw peak RSS and s/step against frames, per batch, here (png)")
    args = p.parse_args(argv)
    if args.grid:
        args.frames, args.batch = [8, 16, 32], [1, 2, 4]
    args.authors_preload = None
    if args.authors_allocator == "tcmalloc":
        args.authors_preload = tcmalloc_library()
        if args.authors_preload is None:
            p.error(f"--authors-allocator tcmalloc: tcmalloc not found on this system ({TCMALLOC_HINT})")
    print(machine_line())
    print(f"{args.resolution}^2, stride {args.stride}, ResNet-18, SGD, fp32, {args.threads} threads, "
          f"{args.steps} steps after {args.warmup} warm-up, {args.rounds} rounds ours/theirs; ours: "
          f"train_step.py {args.ours_args}".rstrip())
    print("frames batch |  s/step: ours authors  ratio | peak RSS MB: ours authors  ratio")
    rows = []
    for batch in args.batch:
        for frames in args.frames:
            rows.append(compare(args, frames, batch))
            print_row(rows[-1])
            if args.json:
                Path(args.json).write_text(json.dumps({"machine": machine_line(), "rows": rows}, indent=1))
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
