#!/usr/bin/env python
"""Rung 5: fixed-point Lava (Loihi 2 widths) with the host in the loop vs the PyTorch model.

    python benchmarks/lava_fixed_agreement.py runs/default/best.pt [--nir runs/default/model.nir]
        [--clips 240] [--batch 16] [--calibration-clips 8] [--engine lava|emulator|torch]
        [--weight-bits 8] [--floor-draws 3] [--json out.json]

Runs built-in synthetic test clips through HybridBridge(mode="fixed") and through the PyTorch model
(float64, eval), and prints top-1 agreement, accuracy of both, agreement by the PyTorch model's
top-1 margin (logit gap to the runner-up: disagreements should sit where the float decision is a
near tie), per-layer spike agreement (fraction of (neuron, timestep) pairs with the same
spike/no-spike) and spike rates, saturation counts, whether Lava matched the integer emulator bit for
bit, the config, the machine and timings.

--engine emulator runs the bit-exact numpy emulator instead of Lava processes (about 3x faster here;
its equality with Lava is tested in tests/sim/test_fixed.py); --engine torch runs the same integer
arithmetic batched in torch (respike_neuro/torch_emulator.py, equal to the emulator: tests/test_bridge.py).
--weight-bits > 8 (emulator and torch only) is a diagnosis beyond Loihi 2: how much of the
disagreement would wider weight mantissas remove?
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lava_fixed_agreement.py", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="training checkpoint")
    p.add_argument("--nir", type=Path, default=None, help="its NIR export (default: export on the fly)")
    p.add_argument("--clips", type=int, default=240, help="built-in test clips (default 240)")
    p.add_argument("--batch", type=int, default=16, help="clips pipelined through Lava per run (default 16)")
    p.add_argument(
        "--calibration-clips", type=int, default=8, help="built-in training clips for fixed-point ranges"
    )
    p.add_argument("--engine", choices=("lava", "emulator", "torch"), default="lava",
                   help="lava (default), the numpy emulator, or its arithmetic batched in torch")
    p.add_argument("--weight-bits", type=int, default=None,
                   help="weight mantissa bits (default: a fine-tuned NIR's own width, else 8 = Loihi 2)")
    p.add_argument("--floor-draws", type=int, default=0,
                   help="also measure PyTorch's agreement with itself under weight noise of the same bit "
                   "width, this many draws (respike_neuro/analysis/stability.py; default 0: off)")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def measure(
    checkpoint: Path,
    nir: Path | None = None,
    *,
    clips: int = 240,
    batch: int = 16,
    calibration_clips: int = 8,
    engine: str = "lava",
    weight_bits: int | None = None,
    floor_draws: int = 0,
    progress: bool = True,
) -> dict:
    """Agreement of fixed-point Lava + host with the PyTorch model on `clips` built-in test clips."""
    import numpy as np
    import torch

    from respike_neuro.analysis.stability import perturbed_agreement, threshold_agreement
    from respike_neuro.bridge import HybridBridge
    from respike_neuro.data.synthetic import SyntheticActions, trained_distribution

    if clips < 1 or batch < 1 or floor_draws < 0:
        raise ValueError(f"--clips and --batch must be >= 1 and --floor-draws >= 0, got {clips}, {batch}, "
                         f"{floor_draws}")
    t0 = time.perf_counter()
    br = HybridBridge(
        checkpoint,
        nir,
        mode="fixed",
        backend="cpu" if engine == "lava" else engine,
        calibration_clips=calibration_clips,
        weight_bits=weight_bits,
    )
    setup_s = time.perf_counter() - t0
    with br:
        cfg = br.cfg
        ds = SyntheticActions(
            split="test",
            num_clips=clips,
            frames=cfg.frames,
            resolution=cfg.resolution,
            stride=cfg.stride,
            **trained_distribution(br.state.get("train_config")),
        )
        same = correct_lava = correct_torch = 0
        flips: dict[str, int] = {}
        total: dict[str, int] = {}
        rate_l: dict[str, float] = {}
        rate_t: dict[str, float] = {}
        saturated, bit_exact, max_dlogit = 0, engine == "lava", 0.0
        margins, agreed = [], []
        run_s = ref_s = 0.0
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=clips, desc="fixed-point Lava", file=sys.stderr)
        seen = []
        for start in range(0, clips, batch):
            idx = range(start, min(start + batch, clips))
            xs = torch.stack([ds[i][0] for i in idx])
            seen.append(xs)
            labels = [ds.label_of(i) for i in idx]
            t1 = time.perf_counter()
            outs = br.run_clips(xs)
            run_s += time.perf_counter() - t1
            t1 = time.perf_counter()
            refs = br.reference(xs)
            ref_s += time.perf_counter() - t1
            saturated += int(outs[0].quantization["saturated_total"])
            bit_exact &= bool(outs[0].quantization.get("bit_exact_with_emulator", False))
            for y, r, ref in zip(labels, outs, refs, strict=True):
                same += r.prediction == ref["prediction"]
                top2 = np.sort(ref["logits"])[-2:]
                margins.append(float(top2[1] - top2[0]))
                agreed.append(r.prediction == ref["prediction"])
                correct_lava += r.prediction == y
                correct_torch += ref["prediction"] == y
                max_dlogit = max(max_dlogit, float(np.abs(r.logits - ref["logits"]).max()))
                for k, s in r.spikes.items():
                    flips[k] = flips.get(k, 0) + int((s != ref["spikes"][k]).sum())
                    total[k] = total.get(k, 0) + s.size
                    rate_l[k] = rate_l.get(k, 0.0) + float(s.sum())
                    rate_t[k] = rate_t.get(k, 0.0) + float(ref["spikes"][k].sum())
            if bar is not None:
                bar.update(len(idx))
        if bar is not None:
            bar.close()
        fixed = br.spiking.fixed
        clips_seen = torch.cat(seen)
        floor = (perturbed_agreement(br.model, clips_seen, bits=br.spiking.weight_bits, draws=floor_draws)
                 if floor_draws > 0 else None)
        # one error source alone: Loihi's threshold register rounds theta to the input current's resolution
        lif_q = fixed.report["lif"]
        thresholds = {k: p["theta_effective"] for k, p in lif_q.items()}
        theta_only = threshold_agreement(br.model, clips_seen, thresholds)
        theta_rel = max(p["theta_error"] / p["theta"] for p in lif_q.values())
        m, a = np.asarray(margins), np.asarray(agreed, dtype=bool)
        edges = [0.0, 0.1, 0.25, 0.5, 1.0, np.inf]
        by_margin = []
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            sel = (m >= lo) & (m < hi)
            n = int(sel.sum())
            agree = float(a[sel].mean()) if n else None
            by_margin.append({"margin": [lo, hi], "clips": n, "agreement": agree})
        return {
            "checkpoint": str(checkpoint),
            "nir": str(nir) if nir else "exported on the fly",
            "model": cfg.to_dict(),
            "clips": clips,
            "batch": batch,
            "engine": engine,
            "weight_bits": br.spiking.weight_bits,
            "calibration": fixed.calibration,
            "top1_agreement": same / clips,
            "accuracy_lava_fixed": correct_lava / clips,
            "accuracy_pytorch": correct_torch / clips,
            "max_abs_logit_difference": max_dlogit,
            "agreement_by_margin": by_margin,
            "largest_margin_disagreeing": float(m[~a].max()) if (~a).any() else None,
            "spike_agreement": {k: 1.0 - flips[k] / total[k] for k in flips},
            "spike_rate_lava": {k: rate_l[k] / total[k] for k in flips},
            "spike_rate_pytorch": {k: rate_t[k] / total[k] for k in flips},
            "pytorch_perturbation_floor": floor,
            "pytorch_deployed_thresholds_agreement": theta_only,
            "max_relative_threshold_error": theta_rel,
            "saturated_values": saturated,
            "lava_bit_exact_with_emulator": bit_exact,
            "frac_bits": {k: v for k, v in fixed.frac_bits.items() if not k.endswith("#in")},
            "timing_s": {
                "setup": setup_s,
                "calibration": br.calibration_s,
                "lava_runs": run_s,
                "pytorch": ref_s,
            },
            "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPU cores, "
            f"{platform.python_implementation()} {platform.python_version()}, torch {torch.__version__}",
        }


def main(argv: list[str] | None = None) -> int:
    from respike_neuro.cli import guarded

    args = _parser().parse_args(argv)
    return guarded(lambda: _measure_and_print(args), errors=(ValueError, TypeError, RuntimeError, OSError))


def _measure_and_print(args: argparse.Namespace) -> int:
    r = measure(
        args.checkpoint,
        args.nir,
        clips=args.clips,
        batch=args.batch,
        calibration_clips=args.calibration_clips,
        engine=args.engine,
        weight_bits=args.weight_bits,
        floor_draws=args.floor_draws,
        progress=not args.quiet,
    )
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
    print("top-1 agreement by PyTorch's top-1 margin (logit gap to the runner-up):")
    for b in r["agreement_by_margin"]:
        lo, hi = b["margin"]
        agree = "-" if b["agreement"] is None else f"{b['agreement']:.2%}"
        print(f"  [{lo:.2f}, {hi:.2f}): {b['clips']:>4} clips, agreement {agree}")
    worst = r["largest_margin_disagreeing"]
    print(f"  largest margin among disagreeing clips: {'none' if worst is None else f'{worst:.3f}'}")
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
    if args.json:
        args.json.write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
