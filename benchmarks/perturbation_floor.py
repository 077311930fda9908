#!/usr/bin/env python
"""How stable are the float model's own decisions? Top-1 agreement of the PyTorch model with itself after
its spiking-branch conv weights are perturbed by LSB-sized noise, per noise size.

    python benchmarks/perturbation_floor.py runs/default/best.pt [--clips 240] [--repeats 2]
        [--bits 8 12 16 20 24] [--json out.json]

Each conv weight w of the SNN gets uniform noise in +-LSB/2 with LSB = max|w_layer| / 2**(bits-1), the
error of rounding to a `bits`-bit mantissa with a per-layer exponent (Loihi 2: 8 bits; see
respike_neuro/analysis/stability.py). The model runs in float64, eval mode, on the built-in test
split. If the model disagrees with itself at 8 bits on x % of clips, no 8-bit deployment (however
faithful its arithmetic) can be expected to agree with it better: this is the floor against which
benchmarks/lava_fixed_agreement.py's figure should be read (its --floor-draws prints it alongside).
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
    p = argparse.ArgumentParser(prog="perturbation_floor.py", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--clips", type=int, default=240, help="built-in test clips (default 240)")
    p.add_argument("--repeats", type=int, default=2, help="noise draws per size (default 2)")
    p.add_argument("--bits", type=int, nargs="+", default=[8, 12, 16, 20, 24])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    return p


def measure(checkpoint: Path, *, clips: int, repeats: int, bits: list[int], seed: int) -> dict:
    import torch

    from respike_neuro.analysis.stability import perturbed_agreement
    from respike_neuro.checkpoint import load_model
    from respike_neuro.config import DataConfig
    from respike_neuro.data.registry import build_split

    model, ckpt = load_model(checkpoint)
    if model.snn is None:
        raise ValueError(f"checkpoint {checkpoint} has no spiking branch")
    model = model.double().eval()
    data = DataConfig.from_dict((ckpt.get("train_config") or {}).get("data", {}), source=str(checkpoint))
    ds = build_split(data.replace(test_clips=clips), model.cfg, "test")
    x = torch.stack([torch.as_tensor(ds[i][0]) for i in range(len(ds))]).double()

    t0 = time.perf_counter()
    rows = [{"bits": b, "agreement": perturbed_agreement(model, x, bits=b, draws=repeats, seed=seed + b)}
            for b in bits]
    return {
        "checkpoint": str(checkpoint), "clips": len(x), "repeats": repeats, "seed": seed, "rows": rows,
        "seconds": time.perf_counter() - t0,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
    }


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.clips < 1 or args.repeats < 1 or any(not 2 <= b <= 53 for b in args.bits):
            raise ValueError("--clips and --repeats must be >= 1, --bits in [2, 53]")
        res = measure(args.checkpoint, clips=args.clips, repeats=args.repeats, bits=args.bits, seed=args.seed)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{res['checkpoint']}: top-1 agreement of the float64 PyTorch model with itself, SNN conv "
          f"weights perturbed by +-LSB/2 ({res['clips']} built-in test clips, {res['repeats']} draws; "
          f"{res['machine']})")
    for r in res["rows"]:
        print(f"  {r['bits']:>2}-bit LSB: " + "  ".join(f"{a:.2%}" for a in r["agreement"]))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
