"""The paper's ablation (Table 4, E1-E9) on the built-in synthetic actions, one config for all.

    python benchmarks/ablation.py                                  # default.yaml's run, every variant
    python benchmarks/ablation.py --set data.train_clips=480 data.val_clips=120 train.epochs=6  # quicker
    python benchmarks/ablation.py --variants E4 E6 E8 E9

Each variant trains with respike_neuro.train (same data, seed, schedule), model selection on the
validation split, one test evaluation with its best.pt. A variant whose <out>/<E>/test_results.json
exists is not retrained (delete it or pass --rerun). Writes <out>/ablation.md and ablation.json.
This is a benchmark, not a test: the quicker line above took 25 minutes for all nine variants on
2 shared (partly busy) CPU cores; the full default.yaml needs roughly twice as long.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from respike_neuro.config import DEFAULT_CONFIG, VARIANTS, ConfigError, build_run_config, read_yaml
from respike_neuro.train import run


def _parse_sets(items: list[str]) -> dict[str, Any]:
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects SECTION.KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def run_variant(
    config: Path, overrides: dict[str, Any], variant: str, out: Path, rerun: bool
) -> dict[str, Any]:
    cfg = build_run_config(
        read_yaml(config),
        {**overrides, "variant": variant, "train.out": str(out / variant), "train.resume": "never"},
        source=str(config),
    )
    from respike_neuro.models.hybrid import build_model

    params = sum(p.numel() for p in build_model(cfg.model).parameters())
    result_file = out / variant / "test_results.json"
    timing_file = out / variant / "ablation_time.json"
    if rerun or not result_file.is_file() or not timing_file.is_file():
        t0 = time.perf_counter()
        run(cfg)
        timing_file.write_text(json.dumps({"seconds": time.perf_counter() - t0}))
    test = json.loads(result_file.read_text())
    records = [json.loads(x) for x in (out / variant / "metrics.jsonl").read_text().splitlines()]
    best_val = [r for r in records if r["kind"] == "epoch"][-1]["best_val_acc"]
    m = cfg.model
    return dict(
        variant=variant,
        architecture=m.architecture,
        inputs=m.inputs,
        attention=bool(m.attention) if m.architecture == "hybrid" else None,
        val_acc=best_val,
        test_acc=test["video_top1"],
        test_top5=test["video_top5"],
        params=params,
        seconds=json.loads(timing_file.read_text())["seconds"],
    )


def to_markdown(rows: list[dict[str, Any]], header: str) -> str:
    lines = [
        header,
        "",
        "| variant | architecture | inputs | attention | val acc | test acc | params | time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        att = "-" if r["attention"] is None else ("yes" if r["attention"] else "no")
        lines.append(
            f"| {r['variant']} | {r['architecture']} | {r['inputs']} | {att} | {r['val_acc']:.3f} | "
            f"{r['test_acc']:.3f} | {r['params'] / 1e6:.2f} M | {r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help="training config shared by all variants"
    )
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        action="extend",
        metavar="SECTION.KEY=VALUE",
        help="config overrides applied to every variant",
    )
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"), help="output directory")
    parser.add_argument("--rerun", action="store_true", help="retrain variants that already have results")
    args = parser.parse_args(argv)
    try:
        overrides = _parse_sets(args.set)
        overrides.setdefault("train.progress", False)
        rows = []
        for variant in args.variants:
            print(f"== {variant}: {VARIANTS[variant]}", file=sys.stderr, flush=True)
            rows.append(run_variant(args.config, overrides, variant, args.out, args.rerun))
            print(to_markdown(rows[-1:], "").strip().splitlines()[-1], flush=True)
    except (ConfigError, ValueError, OSError) as err:
        print(f"ablation: error: {err}", file=sys.stderr)
        return 1
    machine = f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    header = (
        f"Ablation on SyntheticActions ({args.config.name}, overrides {args.set or 'none'}); "
        f"test = video top-1 with each variant's best.pt; {machine}"
    )
    table = to_markdown(rows, header)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation.md").write_text(table)
    (args.out / "ablation.json").write_text(json.dumps({"header": header, "rows": rows}, indent=1))
    print(table)
    print(f"wrote {args.out / 'ablation.md'} and {args.out / 'ablation.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
