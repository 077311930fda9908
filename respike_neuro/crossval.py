"""Official-split cross-validation: train and test every fold, report the mean (UCF-101, HMDB-51).

    python -m respike_neuro.crossval --config respike_neuro/configs/paper_ucf101.yaml \\
        --data.root /data/ucf101 --out runs/ucf101                    # folds 1 2 3
    torchrun --nproc_per_node 4 -m respike_neuro.crossval --config ... --folds 1 2 3

The paper reports UCF-101 and HMDB-51 as 3-fold means; the authors' code only ever ran split 1.
Fold k trains in <out>/fold<k> with data.fold = k: best.pt is selected on a validation part held out
of fold k's *training* list (whole groups / source videos, see the dataset modules) and fold k's test
list is evaluated once, with that checkpoint. Every `python -m respike_neuro.train` flag works here.

Restarting the same command continues: a fold whose test_results.json was written for the same
resolved config is reused, an interrupted fold resumes from its last.pt (train.resume: auto).
<out>/crossval.json holds each fold's metrics and their mean and standard deviation (population std
over folds, as papers report it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import yaml

from respike_neuro.checkpoint import CheckpointError
from respike_neuro.cli import guarded
from respike_neuro.config import ConfigError, RunConfig, config_from_args
from respike_neuro.data.registry import canonical_name, official_folds
from respike_neuro.fileio import write_text_atomic
from respike_neuro.train import make_parser, run

METRICS = ("video_top1", "clip_top1", "video_top5", "clip_top5", "mean_class_accuracy")


def fold_config(cfg: RunConfig, fold: int, out: Path) -> RunConfig:
    """cfg with data.fold = fold and train.out = out/fold<fold>."""
    return dataclasses.replace(
        cfg, data=cfg.data.replace(fold=fold), train=cfg.train.replace(out=str(out / f"fold{fold}"))
    )


def _finished(cfg: RunConfig) -> dict[str, Any] | None:
    """Test metrics of a completed fold run with exactly this config, else None."""
    out = Path(cfg.train.out)
    try:
        saved = yaml.safe_load((out / "config.yaml").read_text())
        metrics = json.loads((out / "test_results.json").read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return metrics if saved == cfg.to_dict() and all(k in metrics for k in METRICS) else None


def summarize(per_fold: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Mean and population std of METRICS over folds."""
    out: dict[str, Any] = {"folds": sorted(per_fold)}
    for key in METRICS:
        values = [float(per_fold[f][key]) for f in sorted(per_fold)]
        out[key] = {"mean": statistics.fmean(values), "std": statistics.pstdev(values), "per_fold": values}
    return out


def run_folds(cfg: RunConfig, folds: list[int], *, out: Path | None = None) -> dict[str, Any]:
    """Train + test each fold (reusing finished ones); returns and writes <out>/crossval.json."""
    name = canonical_name(cfg.data.dataset)
    available = official_folds(name)
    if not available:
        raise ConfigError(f"dataset {name!r} has no official folds; cross-validation needs ucf101 or hmdb51")
    bad = [f for f in folds if f not in available]
    if bad or not folds:
        raise ConfigError(f"folds must be chosen from {list(available)} for {name}, got {folds}")
    if len(set(folds)) != len(folds):
        raise ConfigError(f"folds repeat: {folds}")
    if cfg.data.test_clips == 0:
        raise ConfigError("data.test_clips = 0 disables the test split that cross-validation reports")
    out = Path(out or cfg.train.out)
    per_fold: dict[int, dict[str, Any]] = {}
    reused = []
    for fold in folds:
        fcfg = fold_config(cfg, fold, out)
        metrics = _finished(fcfg)
        if metrics is None:
            summary = run(fcfg)
            if "test" not in summary:
                raise RuntimeError(
                    f"fold {fold} stopped at step {summary['step']} before the test (train.max_steps); "
                    "rerun the same command to continue"
                )
            metrics = summary["test"]
        else:
            reused.append(fold)
        per_fold[fold] = metrics
    result = {
        "dataset": name,
        "root": cfg.data.root,
        "config": cfg.to_dict(),
        "reused_folds": reused,
        "per_fold": {
            str(f): {k: m[k] for k in METRICS + ("num_videos", "num_clips", "best_epoch", "checkpoint")
                     if k in m}
            for f, m in per_fold.items()
        },
        "summary": summarize(per_fold),
    }
    if int(os.environ.get("RANK", "0")) == 0:
        write_text_atomic(out / "crossval.json", json.dumps(result, indent=1))
    return result


def make_crossval_parser() -> argparse.ArgumentParser:
    parser = make_parser()
    parser.prog = "python -m respike_neuro.crossval"
    parser.usage = (
        "%(prog)s [--config FILE] [--out DIR] [--folds K [K ...]] [--set SECTION.KEY=VALUE ...] "
        "[--SECTION.KEY VALUE ...]"
    )
    parser.description = "Train and test every official fold (UCF-101, HMDB-51) and report the mean."
    parser.add_argument(
        "--folds", type=int, nargs="+", default=None, help="folds to run (default: all of the dataset's)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_crossval_parser()
    args = parser.parse_args(argv)
    try:
        return guarded(
            lambda: _run_and_report(args),
            errors=(ConfigError, CheckpointError, ValueError, TypeError, RuntimeError, OSError),
            prefix=f"{parser.prog}: error",
            interrupted="interrupted; rerun the same command to continue",
        )
    finally:
        from respike_neuro.distributed import cleanup_distributed

        cleanup_distributed()


def _run_and_report(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    result = run_folds(cfg, args.folds or list(official_folds(canonical_name(cfg.data.dataset))))
    s = result["summary"]
    print(f"{result['dataset']} cross-validation over folds {s['folds']} (test split of each fold):")
    print(f"{'fold':>6} {'video top-1':>12} {'clip top-1':>11} {'video top-5':>12} {'videos':>7}")
    for f, m in result["per_fold"].items():
        print(f"{f:>6} {m['video_top1']:>12.4f} {m['clip_top1']:>11.4f} {m['video_top5']:>12.4f} "
              f"{m.get('num_videos', 0):>7}")
    print(f"{'mean':>6} {s['video_top1']['mean']:>12.4f} {s['clip_top1']['mean']:>11.4f} "
          f"{s['video_top5']['mean']:>12.4f}")
    print(f"{'std':>6} {s['video_top1']['std']:>12.4f} {s['clip_top1']['std']:>11.4f} "
          f"{s['video_top5']['std']:>12.4f}")
    print(f"results: {Path(result['config']['train']['out']) / 'crossval.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
