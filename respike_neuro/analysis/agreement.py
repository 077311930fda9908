"""How closely a deployed fixed-point model agrees with its PyTorch original: the README's headline numbers.

The deployment (HybridBridge in mode "fixed": the host in torch, the spiking branch at Loihi 2 widths in
Lava, the numpy emulator or its torch twin) and the PyTorch model (float64, eval) classify the same
built-in test clips. `measure_fixed_agreement` reports top-1 agreement, both accuracies, agreement by
the PyTorch model's top-1 margin (logit gap to the runner-up: disagreements should sit where the float
decision is a near tie), per-layer spike agreement (fraction of (neuron, timestep) pairs with the same
spike/no-spike) and spike rates, saturation counts, whether Lava matched the integer emulator bit for
bit, and two floors from analysis/stability.py. benchmarks/lava_fixed_agreement.py is its command line.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from respike_neuro.engines import ENGINES as BRIDGE_ENGINES

# the command line's engine -> HybridBridge backend: "lava" (Lava's CPU simulation) and the Lava-free
# engines of respike_neuro/engines.py
ENGINES = {"lava": "cpu", **{n: n for n, e in BRIDGE_ENGINES.items() if not e.lava}}
MARGIN_EDGES = (0.0, 0.1, 0.25, 0.5, 1.0, np.inf)


@dataclass
class AgreementTally:
    """Running counts over the clips seen so far, deployed run vs PyTorch reference."""

    check_bit_exact: bool  # Lava runs cross-check the emulator; other engines have nothing to report
    clips: int = 0
    same: int = 0
    correct_deployed: int = 0
    correct_torch: int = 0
    max_dlogit: float = 0.0
    saturated: int = 0
    flips: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    rate_deployed: dict[str, float] = field(default_factory=dict)
    rate_torch: dict[str, float] = field(default_factory=dict)
    margins: list[float] = field(default_factory=list)
    agreed: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.bit_exact = self.check_bit_exact

    def add_batch(self, labels, outs, refs) -> None:
        """One batch: the bridge's results and the PyTorch references of the same clips, with their labels."""
        self.saturated += int(outs[0].quantization["saturated_total"])
        self.bit_exact &= bool(outs[0].quantization.get("bit_exact_with_emulator", False))
        for y, r, ref in zip(labels, outs, refs, strict=True):
            self.clips += 1
            self.same += r.prediction == ref["prediction"]
            top2 = np.sort(ref["logits"])[-2:]
            self.margins.append(float(top2[1] - top2[0]))
            self.agreed.append(r.prediction == ref["prediction"])
            self.correct_deployed += r.prediction == y
            self.correct_torch += ref["prediction"] == y
            self.max_dlogit = max(self.max_dlogit, float(np.abs(r.logits - ref["logits"]).max()))
            for k, s in r.spikes.items():
                self.flips[k] = self.flips.get(k, 0) + int((s != ref["spikes"][k]).sum())
                self.total[k] = self.total.get(k, 0) + s.size
                self.rate_deployed[k] = self.rate_deployed.get(k, 0.0) + float(s.sum())
                self.rate_torch[k] = self.rate_torch.get(k, 0.0) + float(ref["spikes"][k].sum())

    def by_margin(self, edges=MARGIN_EDGES) -> list[dict[str, Any]]:
        """Top-1 agreement of the clips whose PyTorch margin lies in each [lo, hi) bin."""
        m, a = np.asarray(self.margins), np.asarray(self.agreed, dtype=bool)
        out = []
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            sel = (m >= lo) & (m < hi)
            n = int(sel.sum())
            agree = float(a[sel].mean()) if n else None
            out.append({"margin": [lo, hi], "clips": n, "agreement": agree})
        return out

    def largest_margin_disagreeing(self) -> float | None:
        m, a = np.asarray(self.margins), np.asarray(self.agreed, dtype=bool)
        return float(m[~a].max()) if (~a).any() else None

    def summary(self, clips: int) -> dict[str, Any]:
        """The tally as the report's fields (rates and agreements as fractions of `clips` / of neurons)."""
        return {
            "top1_agreement": self.same / clips,
            "accuracy_lava_fixed": self.correct_deployed / clips,
            "accuracy_pytorch": self.correct_torch / clips,
            "max_abs_logit_difference": self.max_dlogit,
            "agreement_by_margin": self.by_margin(),
            "largest_margin_disagreeing": self.largest_margin_disagreeing(),
            "spike_agreement": {k: 1.0 - self.flips[k] / self.total[k] for k in self.flips},
            "spike_rate_lava": {k: self.rate_deployed[k] / self.total[k] for k in self.flips},
            "spike_rate_pytorch": {k: self.rate_torch[k] / self.total[k] for k in self.flips},
        }


def _check(clips: int, batch: int, floor_draws: int) -> None:
    if clips < 1 or batch < 1 or floor_draws < 0:
        raise ValueError(f"--clips and --batch must be >= 1 and --floor-draws >= 0, got {clips}, {batch}, "
                         f"{floor_draws}")


def run_and_compare(br, ds, clips: int, batch: int, tally: AgreementTally, progress: bool):
    """Every clip through the bridge and the PyTorch reference, `batch` at a time; returns the clips
    seen (one tensor) and the seconds spent in deployed runs and in PyTorch."""
    import torch

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
        tally.add_batch(labels, outs, refs)
        if bar is not None:
            bar.update(len(idx))
    if bar is not None:
        bar.close()
    return torch.cat(seen), run_s, ref_s


def error_floors(br, clips_seen, floor_draws: int) -> dict[str, Any]:
    """What PyTorch alone does under one error source at a time: weight noise of the deployed width
    (`floor_draws` draws, None when 0), and its thresholds moved to the ones Loihi's registers hold."""
    from respike_neuro.analysis.stability import perturbed_agreement, threshold_agreement

    floor = (perturbed_agreement(br.model, clips_seen, bits=br.spiking.weight_bits, draws=floor_draws)
             if floor_draws > 0 else None)
    # one error source alone: Loihi's threshold register rounds theta to the input current's resolution
    lif_q = br.spiking.fixed.report["lif"]
    thresholds = {k: p["theta_effective"] for k, p in lif_q.items()}
    return {
        "pytorch_perturbation_floor": floor,
        "pytorch_deployed_thresholds_agreement": threshold_agreement(br.model, clips_seen, thresholds),
        "max_relative_threshold_error": max(p["theta_error"] / p["theta"] for p in lif_q.values()),
    }


def machine_line() -> str:
    import torch

    return (f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPU cores, "
            f"{platform.python_implementation()} {platform.python_version()}, torch {torch.__version__}")


def measure_fixed_agreement(
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
    from respike_neuro.bridge import HybridBridge
    from respike_neuro.data.synthetic import SyntheticActions, trained_distribution

    _check(clips, batch, floor_draws)
    t0 = time.perf_counter()
    br = HybridBridge(checkpoint, nir, mode="fixed", backend=ENGINES.get(engine, engine),
                      calibration_clips=calibration_clips, weight_bits=weight_bits)
    setup_s = time.perf_counter() - t0
    with br:
        cfg = br.cfg
        ds = SyntheticActions(split="test", num_clips=clips, frames=cfg.frames, resolution=cfg.resolution,
                              stride=cfg.stride, **trained_distribution(br.state.get("train_config")))
        tally = AgreementTally(check_bit_exact=engine == "lava")
        clips_seen, run_s, ref_s = run_and_compare(br, ds, clips, batch, tally, progress)
        fixed = br.spiking.fixed
        return {
            "checkpoint": str(checkpoint),
            "nir": str(nir) if nir else "exported on the fly",
            "model": cfg.to_dict(),
            "clips": clips,
            "batch": batch,
            "engine": engine,
            "weight_bits": br.spiking.weight_bits,
            "calibration": fixed.calibration,
            **tally.summary(clips),
            **error_floors(br, clips_seen, floor_draws),
            "saturated_values": tally.saturated,
            "lava_bit_exact_with_emulator": tally.bit_exact,
            "frac_bits": {k: v for k, v in fixed.frac_bits.items() if not k.endswith("#in")},
            "timing_s": {
                "setup": setup_s,
                "calibration": br.calibration_s,
                "lava_runs": run_s,
                "pytorch": ref_s,
            },
            "machine": machine_line(),
        }
