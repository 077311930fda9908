#!/usr/bin/env python
"""Rung 5: fixed-point Lava (Loihi 2 widths) with the host in the loop vs the PyTorch model.

    python benchmarks/lava_fixed_agreement.py runs/default/best.pt [--nir runs/default/model.nir]
        [--clips 240] [--batch 16] [--calibration-clips 8] [--engine lava|emulator|torch]
        [--weight-bits 8] [--floor-draws 3] [--json out.json]

Runs built-in synthetic test clips through HybridBridge(mode="fixed") and through the PyTorch model
(float64, eval; the computation is respike_neuro/analysis/agreement.py), and prints top-1 agreement,
accuracy of both, agreement by the PyTorch model's top-1 margin (logit gap to the runner-up:
disagreements should sit where the float decision is a near tie), per-layer spike agreement
(fraction of (neuron, timestep) pairs with the same spike/no-spike) and spike rates, saturation
counts, whether Lava matched the integer emulator bit for bit, the config, the machine and timings.

--engine emulator runs the bit-exact numpy emulator instead of Lava processes (about 3x faster here;
its equality with Lava is tested in tests/sim/test_fixed.py); --engine torch runs the same integer
arithmetic batched in torch (respike_neuro/torch_emulator.py, equal to the emulator: tests/test_bridge.py).
--weight-bits > 8 (emulator and torch only) is a diagnosis beyond Loihi 2: how much of the
disagreement would wider weight mantissas remove?
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from respike_neuro.analysis.agreement import ENGINES, measure_fixed_agreement  # noqa: E402

# the command-line options that are measure_fixed_agreement's keywords of the same name
MEASURE_OPTIONS = ("clips", "batch", "calibration_clips", "engine", "weight_bits", "floor_draws")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lava_fixed_agreement.py", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="training checkpoint")
    p.add_argument("--nir", type=Path, default=None, help="its NIR export (default: export on the fly)")
    p.add_argument("--clips", type=int, default=240, help="built-in test clips (default 240)")
    p.add_argument("--batch", type=int, default=16, help="clips pipelined through Lava per run (default 16)")
    p.add_argument(
        "--calibration-clips", type=int, default=8, help="built-in training clips for fixed-point ranges"
    )
    p.add_argument("--engine", choices=tuple(ENGINES), default="lava",
                   help="lava (default), the numpy emulator, or its arithmetic batched in torch")
    p.add_argument("--weight-bits", type=int, default=None,
                   help="weight mantissa bits (default: a fine-tuned NIR's own width, else 8 = Loihi 2)")
    p.add_argument("--floor-draws", type=int, default=0,
                   help="also measure PyTorch's agreement with itself under weight noise of the same bit "
                   "width, this many draws (respike_neuro/analysis/stability.py; default 0: off)")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def measure(checkpoint: Path, nir: Path | None = None, **options) -> dict:
    """Agreement of fixed-point Lava + host with the PyTorch model (respike_neuro/analysis/agreement.py)."""
    return measure_fixed_agreement(checkpoint, nir, **options)


def main(argv: list[str] | None = None) -> int:
    from respike_neuro.cli import guarded

    args = _parser().parse_args(argv)
    return guarded(lambda: _measure_and_print(args), errors=(ValueError, TypeError, RuntimeError, OSError))


def _measure_and_print(args: argparse.Namespace) -> int:
    options = {k: getattr(args, k) for k in MEASURE_OPTIONS}
    r = measure(args.checkpoint, args.nir, progress=not args.quiet, **options)
    _print_setup(r)
    _print_agreement(r)
    _print_layers_and_timing(r)
    if args.json:
        args.json.write_text(json.dumps(r, indent=1))
    return 0


def _print_setup(r: dict) -> None:
    """Config, machine, top-1 agreement and the PyTorch-only floors."""
    m = r["model"]
    print(
        f"config: {r['checkpoint']} ({m['architecture']}, {m['frames']} frames {m['resolution']}px, width "
        f"{m['snn_width']}, blocks {m['snn_blocks']}); NIR: {r['nir']}; {r['clips']} built-in test clips, "
        f"{r['batch']} per Lava run; engine {r['engine']}, {r['weight_bits']}-bit weights; fixed-point "
        f"calibration: {r['calibration']}"
    )
    print(f"machine: {r['machine']}")
    print(
        f"top-1 agreement fixed point ({r['engine']}) vs PyTorch: {r['top1_agreement']:.2%} "
        f"(accuracy: Lava fixed {r['accuracy_lava_fixed']:.2%}, PyTorch {r['accuracy_pytorch']:.2%}); "
        f"max |logit difference| {r['max_abs_logit_difference']:.3f}"
    )
    if r["pytorch_perturbation_floor"] is not None:
        print(f"PyTorch vs itself with +-LSB/2 {r['weight_bits']}-bit weight noise in its SNN convs "
              "(the floor any deployment at this width is measured against): "
              + ", ".join(f"{x:.2%}" for x in r["pytorch_perturbation_floor"]))
    print(f"PyTorch vs itself with only its thresholds moved to the deployed ones (vth / input scale, up "
          f"to {r['max_relative_threshold_error']:.1e} relative): "
          f"{r['pytorch_deployed_thresholds_agreement']:.2%}")


def _print_agreement(r: dict) -> None:
    """Agreement by the PyTorch model's top-1 margin."""
    print("top-1 agreement by PyTorch's top-1 margin (logit gap to the runner-up):")
    for b in r["agreement_by_margin"]:
        lo, hi = b["margin"]
        agree = "-" if b["agreement"] is None else f"{b['agreement']:.2%}"
        print(f"  [{lo:.2f}, {hi:.2f}): {b['clips']:>4} clips, agreement {agree}")
    worst = r["largest_margin_disagreeing"]
    print(f"  largest margin among disagreeing clips: {'none' if worst is None else f'{worst:.3f}'}")


def _print_layers_and_timing(r: dict) -> None:
    """Per-layer spike agreement and rates, saturation, bit-exactness, timings."""
    print(f"{'LIF layer':<16} {'spike agreement':>16} {'rate Lava':>10} {'rate PyTorch':>13}")
    for k, a in r["spike_agreement"].items():
        print(f"{k:<16} {a:>16.4%} {r['spike_rate_lava'][k]:>10.4f} {r['spike_rate_pytorch'][k]:>13.4f}")
    print(
        f"saturated values: {r['saturated_values']}; Lava bit-exact with the integer emulator: "
        f"{r['lava_bit_exact_with_emulator'] if r['engine'] == 'lava' else 'n/a (emulator run)'}"
    )
    t = r["timing_s"]
    print(
        f"timing: setup {t['setup']:.1f} s (calibration {t['calibration']:.1f} s), Lava+host runs "
        f"{t['lava_runs']:.1f} s ({1e3 * t['lava_runs'] / r['clips']:.0f} ms/clip), "
        f"PyTorch {t['pytorch']:.1f} s"
    )


if __name__ == "__main__":
    sys.exit(main())
