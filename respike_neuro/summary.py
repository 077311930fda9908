"""Model card: parameters, shapes, operation counts and energy of a ReSpike configuration.

    python -m respike_neuro.summary                        # the paper's reference network and clip
    python -m respike_neuro.summary --ann resnet50 --json  # machine-readable
    python -m respike_neuro.summary --checkpoint ckpt.pt --measure --clips 16

Counts are per clip (batch 1) and analytic (a forward pass on the meta device, see
`analysis.ops`); energy follows the paper's Appendix A (`analysis.energy`). SyOPs need spike
rates: ASSUMED (one rate for every LIF layer, --rate) unless --measure runs the checkpoint on
data and measures them per layer (`analysis.spike_rates`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from respike_neuro.cli import ArgumentParser
from respike_neuro.config import VARIANTS, ModelConfig

WEIGHT_KEYS = (
    "ann",
    "snn_width",
    "snn_blocks",
    "architecture",
    "attention",
    "num_classes",
    "attention_head_dim",
)
DEFAULT_RATE = 0.1


class CardError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


class CardFileError(CardError):
    """A file named on the command line holds something unusable: one line, exit status 1."""


# -- configuration ------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m respike_neuro.summary",
        description="ReSpike model card: parameters, shapes, MACs/SyOPs per layer, energy (paper App. A).",
    )
    src = p.add_argument_group("model (default: the paper's reference network, 16 x 224^2, stride 4)")
    src.add_argument("--config", type=Path, help="YAML file with a `model:` section of ModelConfig keys")
    src.add_argument("--checkpoint", type=Path, help="checkpoint file; its model config is used")
    src.add_argument("--variant", help=f"ablation variant of the paper's Table 4: {', '.join(VARIANTS)}")
    src.add_argument("--ann", help="ANN backbone (resnet18, resnet34, resnet50, resnet101, resnet152)")
    src.add_argument("--num-classes", type=int)
    src.add_argument("--stride", type=int, help="segment length s (one key frame + s-1 residuals)")
    src.add_argument("--frames", type=int, help="frames per clip")
    src.add_argument("--resolution", type=int, help="frame side in pixels (multiple of 32)")
    src.add_argument("--snn-width", type=int, help="SNN stem channels")
    src.add_argument("--architecture", help="hybrid, ann or snn")
    src.add_argument("--inputs", help="key+res, all, key or res")
    src.add_argument("--no-attention", action="store_true", help="fuse only at the head (variant E8)")
    rates = p.add_argument_group("spike rates")
    rates.add_argument(
        "--rate",
        type=float,
        default=None,
        help=f"ASSUMED spike rate of every LIF layer without --measure (default {DEFAULT_RATE})",
    )
    rates.add_argument(
        "--measure", action="store_true", help="measure per-layer spike rates of --checkpoint on data"
    )
    rates.add_argument("--data", default="synthetic", help="data for --measure (only: synthetic)")
    rates.add_argument("--split", default="val", help="synthetic split (train, val, test; default val)")
    rates.add_argument("--clips", type=int, default=8, help="clips to measure on (default 8)")
    rates.add_argument("--batch-size", type=int, default=2)
    rates.add_argument("--seed", type=int, default=None, help="data seed (default: the checkpoint's)")
    energy = p.add_argument_group("energy (45 nm, pJ per operation)")
    energy.add_argument("--e-mac", type=float, default=4.6, help="pJ per real multiply-accumulate (4.6)")
    energy.add_argument("--e-ac", type=float, default=0.9, help="pJ per add / synaptic op (0.9)")
    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print the card as JSON (with every layer)")
    out.add_argument("--layers", action="store_true", help="also print the per-layer table")
    out.add_argument("--plot", type=Path, help="write an energy-breakdown bar chart (PNG)")
    return p


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    pairs = {
        "ann": args.ann,
        "num_classes": args.num_classes,
        "stride": args.stride,
        "frames": args.frames,
        "resolution": args.resolution,
        "snn_width": args.snn_width,
        "architecture": args.architecture,
        "inputs": args.inputs,
    }
    out = {k: v for k, v in pairs.items() if v is not None}
    if args.no_attention:
        out["attention"] = False
    return out


def load_yaml_model_config(path: Path) -> tuple[dict[str, Any], str | None]:
    """The `model:` section (and the optional `variant:`) of a training YAML config."""
    import yaml

    if not path.is_file():
        raise CardError(f"--config {path}: no such file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise CardError(f"--config {path}: not valid YAML ({str(e).splitlines()[0]})") from e
    except UnicodeDecodeError:
        raise CardError(f"--config {path}: not a text (YAML) file") from None
    if not isinstance(data, dict) or not ("model" in data or "variant" in data):
        raise CardError(f"--config {path}: expected a mapping with a `model:` section of ModelConfig keys")
    model = data.get("model") or {}
    if not isinstance(model, dict):
        raise CardError(f"--config {path}: the `model:` section must be a mapping of ModelConfig keys")
    variant = data.get("variant")
    if variant is not None and not isinstance(variant, str):
        raise CardError(f"--config {path}: `variant:` must be a name like E9, got {variant!r}")
    return model, variant


def load_checkpoint_file(path: Path) -> dict[str, Any]:
    """Checkpoint dict with "model_config" and "model" (read by respike_neuro.checkpoint)."""
    from respike_neuro.checkpoint import CheckpointError, load_checkpoint

    try:
        return load_checkpoint(path)
    except CheckpointError as e:
        raise CardFileError(str(e)) from e


def _config_dict(value: Any, source: str) -> dict[str, Any]:
    if isinstance(value, ModelConfig):
        return value.to_dict()
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, dict):
        raise CardError(f"{source}: model_config is a {type(value).__name__}, expected a mapping")
    return dict(value)


def resolve_config(args: argparse.Namespace) -> tuple[ModelConfig, dict[str, Any] | None]:
    """Defaults <- --config or --checkpoint <- --variant <- explicit flags; returns (cfg, checkpoint)."""
    from respike_neuro.models.ann import ANN_BACKBONES

    if args.config is not None and args.checkpoint is not None:
        raise CardError("give --config or --checkpoint, not both")
    values: dict[str, Any] = {}
    ckpt = None
    variant = args.variant
    if args.config is not None:
        values, file_variant = load_yaml_model_config(args.config)
        variant = variant or file_variant
        source = f"--config {args.config}"
    elif args.checkpoint is not None:
        ckpt = load_checkpoint_file(args.checkpoint)
        values = _config_dict(ckpt["model_config"], f"--checkpoint {args.checkpoint}")
        source = f"--checkpoint {args.checkpoint}"
    else:
        source = "options"
    overrides = _overrides(args)
    if variant is not None:
        if variant not in VARIANTS:
            raise CardError(f"--variant {variant!r} is unknown; choose one of {', '.join(VARIANTS)}")
        overrides = {**VARIANTS[variant], **overrides}
    if ckpt is not None:  # weights fix the architecture: only the clip geometry may change
        for key in WEIGHT_KEYS:
            if key in overrides and key in values and overrides[key] != values[key]:
                who = f"--variant {variant}" if key not in _overrides(args) else "--" + key.replace("_", "-")
                raise CardError(
                    f"{who} sets {key}={overrides[key]!r}, but the checkpoint was trained with "
                    f"{key}={values[key]!r}"
                )
    values = {**values, **overrides}
    if "ann" in values and values["ann"] not in ANN_BACKBONES:
        raise CardError(f"unknown ANN backbone {values['ann']!r}; available: {', '.join(ANN_BACKBONES)}")
    try:
        cfg = ModelConfig.from_dict(values, source=source)
    except KeyError as e:
        raise CardError(str(e.args[0])) from e
    except (ValueError, TypeError) as e:
        raise CardError(f"{source}: {e}") from e
    return cfg, ckpt


# -- measurement ---------------------------------------------------------------------------------
def measure(cfg: ModelConfig, ckpt: dict[str, Any], args: argparse.Namespace) -> tuple[dict[str, float], str]:
    """Per-layer spike rates of the checkpoint's model on built-in synthetic clips."""
    from torch.utils.data import DataLoader

    from respike_neuro.analysis.spike_rates import measure_spike_rates
    from respike_neuro.data.synthetic import SyntheticActions, trained_distribution
    from respike_neuro.models.hybrid import build_model

    if args.data != "synthetic":
        raise CardError(f"--data {args.data!r}: only the built-in 'synthetic' data is supported here")
    if not cfg.has_snn:
        raise CardError(f"--measure needs a spiking branch; architecture={cfg.architecture!r} has none")
    if args.clips < 1 or args.batch_size < 1:
        raise CardError(f"--clips and --batch-size must be >= 1, got {args.clips} and {args.batch_size}")
    from respike_neuro.checkpoint import CheckpointError, check_state_dict

    model = build_model(cfg.replace(ann_weights=None))  # the checkpoint's weights replace them
    try:
        check_state_dict(model, ckpt["model"], source=f"--checkpoint {args.checkpoint}")
        model.load_state_dict(ckpt["model"])
    except CheckpointError as e:
        raise CardError(str(e)) from e
    except (RuntimeError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CardError(
            f"--checkpoint {args.checkpoint}: weights do not fit its model config ({first})"
        ) from e
    from respike_neuro.checkpoint import train_config_of

    try:
        distribution = trained_distribution(train_config_of(ckpt, args.checkpoint))
    except CheckpointError as e:
        raise CardFileError(str(e)) from e
    if args.seed is not None:
        distribution["seed"] = args.seed
    try:
        data = SyntheticActions(
            split=args.split,
            num_clips=args.clips,
            frames=cfg.frames,
            resolution=cfg.resolution,
            stride=cfg.stride,
            **distribution,
        )
    except (ValueError, TypeError) as e:
        raise CardError(f"synthetic data: {e}") from e
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=False, num_workers=0)
    rates = measure_spike_rates(model, loader, progress=sys.stderr.isatty())
    seed = distribution.get("seed", 0)
    return rates, f"MEASURED on {args.clips} synthetic {args.split} clips (seed {seed})"


# -- the card ------------------------------------------------------------------------------------
def _params(module: torch.nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def build_card(
    cfg: ModelConfig, rates: float | dict[str, float], rate_note: str, e_mac: float = 4.6, e_ac: float = 0.9
) -> dict[str, Any]:
    """Everything the card shows, as a JSON-ready dict."""
    from respike_neuro.analysis.energy import EnergyModel, energy_breakdown
    from respike_neuro.analysis.ops import OpsReport, apply_rates, trace_config

    energy_model = EnergyModel(e_mac, e_ac)
    trace, model = trace_config(cfg)
    mode = "measured" if isinstance(rates, dict) else "assumed"
    report = OpsReport(cfg, apply_rates(trace, rates), trace, mode)
    params = {
        "ann": _params(model.ann),
        "snn": _params(model.snn),
        "fusion": _params(model.fusions),
        "head": _params(model.head),
    }
    params["total"] = sum(params.values())
    spike_dense = report.total("dense_macs", "snn_spike")
    rate_info: dict[str, Any] = {"mode": mode, "note": rate_note}
    if isinstance(rates, dict):
        rate_info["per_layer"] = rates
    else:
        rate_info["assumed_rate"] = rates
    if spike_dense:
        rate_info["effective_rate"] = report.total("syops") / spike_dense
    return {
        "model_config": cfg.to_dict(),
        "clip": {
            "frames": cfg.frames,
            "resolution": cfg.resolution,
            "stride": cfg.stride,
            "segments": cfg.segments,
        },
        "parameters": params,
        "shapes": {
            "ann_stages": [list(s) for s in trace.ann_stages],
            "snn_stages": [list(s) for s in trace.snn_stages],
            "fusion_tokens": trace.fusion_tokens,
        },
        "spike_rates": rate_info,
        "energy": energy_breakdown(report, energy_model),
        "layers": [layer.to_dict() for layer in report.layers],
    }


def _scale(card: dict[str, Any]) -> tuple[float, str, int]:
    """Giga-ops for real clips, mega-ops for toy configs; energy decimals to match."""
    return (1e9, "G", 3) if card["energy"]["complete"]["macs"] >= 1e9 else (1e6, "M", 5)


def format_card(card: dict[str, Any], *, layers: bool = False) -> str:
    from respike_neuro.analysis.ops import COMPONENT_TITLES

    cfg = card["model_config"]
    e = card["energy"]
    sc, u, ed = _scale(card)
    lines = []
    branches = {
        "hybrid": f"hybrid ({cfg['inputs']}, {'cross-attention' if cfg['attention'] else 'head fusion'})",
        "ann": f"ANN only ({cfg['inputs']})",
        "snn": f"SNN only ({cfg['inputs']})",
    }[cfg["architecture"]]
    blocks = "-".join(str(b) for b in cfg["snn_blocks"])
    lines.append(
        f"ReSpike model card: {branches} | ANN {cfg['ann']} | SNN MS-ResNet width {cfg['snn_width']} "
        f"blocks {blocks} | {cfg['num_classes']} classes"
    )
    c = card["clip"]
    lines.append(
        f"clip: {c['frames']} frames x 3 x {c['resolution']} x {c['resolution']}, stride {c['stride']} "
        f"-> {c['segments']} segments; all counts per clip (batch 1)"
    )
    lines += ["", "Parameters"]
    for k, v in card["parameters"].items():
        lines.append(f"  {k:<8}{v:>14,}")
    sh = card["shapes"]
    lines += [
        "",
        "Stage shapes (ANN: frames x C x H x W; SNN: T x segments x C x H x W; "
        "fusion: query x context tokens, width, calls = T x segments)",
    ]
    for k in range(4):
        ann = "x".join(map(str, sh["ann_stages"][k])) if k < len(sh["ann_stages"]) else "-"
        snn = "x".join(map(str, sh["snn_stages"][k])) if k < len(sh["snn_stages"]) else "-"
        if k < len(sh["fusion_tokens"]):
            f = sh["fusion_tokens"][k]
            fus = (
                f"{f['query_tokens']} x {f['context_tokens']}, d={f['dim']} (ctx {f['context_dim']}), "
                f"{f['calls']} calls"
            )
        else:
            fus = "-"
        lines.append(f"  stage {k + 1}  ANN {ann:<16} SNN {snn:<18} fusion {fus}")
    r = card["spike_rates"]
    if r["mode"] == "assumed":
        rate_line = f"ASSUMED {r['assumed_rate']:g} spikes/neuron/timestep for every LIF layer ({r['note']})"
    else:
        rate_line = (
            f"{r['note']}; effective rate (SyOPs / spike-driven MACs) {r.get('effective_rate', 0):.4f}"
        )
    lines += [
        "",
        f"Operations and energy per clip (E_MAC {e['energy_model']['e_mac_pj']:g} pJ, "
        f"E_AC = E_SyOP {e['energy_model']['e_ac_pj']:g} pJ)",
        f"  spike rates: {rate_line}",
        f"  {'component':<18}{f'MACs ({u})':>9}{f'adds ({u})':>10}{f'SyOPs ({u})':>10}{'energy (mJ)':>13}",
    ]
    for key, row in e["components"].items():
        lines.append(
            f"  {COMPONENT_TITLES[key]:<18}{row['macs'] / sc:9.3f}{row['adds'] / sc:10.3f}"
            f"{row['syops'] / sc:10.3f}{row['energy_mj']:13.{ed}f}"
        )
    t = e["complete"]
    lines.append(
        f"  {'complete total':<18}{t['macs'] / sc:9.3f}{t['adds'] / sc:10.3f}{t['syops'] / sc:10.3f}"
        f"{t['energy_mj']:13.{ed}f}"
    )
    p = e["paper_compatible"]
    lines += [
        "",
        "Totals",
        f"  paper-compatible: ANN conv {p['ann_conv_macs'] / sc:.3f} {u} + cross-attention "
        f"{p['fusion_macs'] / sc:.3f} {u} MACs, {p['syops'] / sc:.3f} {u} SyOPs "
        f"-> {p['energy_mj']:.{ed}f} mJ",
        f"  complete:         {t['macs'] / sc:.3f} {u} MACs, {t['adds'] / sc:.3f} {u} adds, "
        f"{t['syops'] / sc:.3f} {u} SyOPs -> {t['energy_mj']:.{ed}f} mJ "
        f"({t['energy_mj'] - p['energy_mj']:+.{ed}f} mJ)",
    ]
    q = e.get("paper_table3")
    if q is not None:
        sy = " / ".join(f"{v / 1e9:.2f} ({k})" for k, v in q["syops"].items())
        en = " / ".join(f"{v:.2f}" for v in q["energy_mj"].values())
        implied = " / ".join(f"{v:.4f}" for v in q["implied_mean_rate"].values())
        lines += [
            f"  paper Table 3:    ANN {q['ann_macs'] / 1e9:.2f} G + CA {q['ca_macs'] / 1e9:.2f} G MACs, "
            f"SyOPs {sy} G -> {en} mJ",
            f"                    our count with the quoted 7.22 G CA instead of ours: "
            f"{q['energy_with_quoted_ca_mj']:.2f} mJ; Table 3's SyOPs imply a mean rate of {implied}",
        ]
    lines += ["", "Complete minus paper-compatible, and why"]
    for d in e["differences"].values():
        if d["macs"] or d["adds"]:
            lines.append(
                f"  {d['macs'] / sc:+8.3f} {u} MACs {d['adds'] / sc:+8.3f} {u} adds "
                f"{d['energy_mj']:+8.{ed}f} mJ  {d['explanation']}"
            )
    if e["paper_compatible"]["fusion_macs"]:
        lines.append(
            "  note: the paper quotes 7.22 G for the cross-attention (R-18 and R-50 alike); no "
            "count of the modules reproduces it, so the paper-compatible total uses the modules' "
            "linear layers + QK^T/AV, the method the paper cites."
        )
    if layers:
        lines += [
            "",
            "Per layer (dense MACs: what a dense execution would cost; SyOPs = rate x dense MACs; "
            "rate: spikes/neuron/timestep of the input LIF)",
            f"  {'layer':<40}{'component':<11}{'kind':<9}{'dense MACs':>14}{'MACs':>14}{'adds':>12}"
            f"{'SyOPs':>14}{'rate':>8}",
        ]
        for layer in card["layers"]:
            rate = f"{layer['rate']:.4f}" if "rate" in layer else ""
            lines.append(
                f"  {layer['name']:<40}{layer['component']:<11}{layer['kind']:<9}{layer['dense_macs']:>14,}"
                f"{layer['macs']:>14,}{layer['adds']:>12,}{layer['syops']:>14,.0f}{rate:>8}"
            )
    return "\n".join(lines)


def plot_energy(card: dict[str, Any], path: Path) -> None:
    """Stacked bars: energy per component, paper-compatible vs complete."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from respike_neuro.analysis.ops import COMPONENT_TITLES

    e = card["energy"]
    em = e["energy_model"]
    p = e["paper_compatible"]
    paper = {
        "ann": p["ann_conv_macs"] * em["e_mac_pj"] * 1e-9,
        "snn_spike": p["syops"] * em["e_ac_pj"] * 1e-9,
        "fusion": p["fusion_macs"] * em["e_mac_pj"] * 1e-9,
    }
    fig, ax = plt.subplots(figsize=(6, 4))
    bottoms = [0.0, 0.0]
    for key, title in COMPONENT_TITLES.items():
        vals = [paper.get(key, 0.0), e["components"][key]["energy_mj"]]
        ax.bar(["paper-compatible", "complete"], vals, bottom=bottoms, label=title)
        bottoms = [b + v for b, v in zip(bottoms, vals)]
    ax.set_ylabel("energy per clip (mJ, 45 nm)")
    ax.set_title(
        f"ReSpike {card['model_config']['ann']}, s={card['clip']['stride']}, "
        f"rates {card['spike_rates']['mode']}"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    from respike_neuro.fileio import save_figure_atomic

    try:
        save_figure_atomic(fig, path, dpi=120)
    finally:
        plt.close(fig)


def _check_args(args: argparse.Namespace) -> None:
    """Numbers and paths before any work (a bad --plot used to fail after the whole card)."""
    from respike_neuro.cli import UsageError, check_input_file, check_number, check_plot_file

    try:
        for option, value, low in (("--rate", args.rate, 0.0), ("--clips", args.clips, 1),
                                   ("--batch-size", args.batch_size, 1)):
            check_number(value, option, minimum=low)
        for option, value in (("--e-mac", args.e_mac), ("--e-ac", args.e_ac)):
            check_number(value, option)  # finite; the energy model names the range
        for option, path in (("--config", args.config), ("--checkpoint", args.checkpoint)):
            if path is not None:
                check_input_file(path, option)
        if args.plot is not None:
            check_plot_file(args.plot, inputs=(args.config, args.checkpoint))
    except UsageError as e:
        raise CardError(str(e)) from None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        _check_args(args)
        cfg, ckpt = resolve_config(args)
        if args.measure:
            if ckpt is None:
                raise CardError(
                    "--measure needs --checkpoint (spike rates of untrained weights mean nothing)"
                )
            if args.rate is not None:
                raise CardError("--rate is the assumed rate without --measure; give one or the other")
            rates, note = measure(cfg, ckpt, args)
        else:
            rates = DEFAULT_RATE if args.rate is None else args.rate
            if not 0.0 <= rates <= 1.0:
                raise CardError(f"--rate {rates} must be in [0, 1] (spikes per neuron per timestep)")
            note = (
                "the paper reports no rates; --rate sets it, --measure measures them"
                if args.rate is None
                else "set by --rate"
            )
        try:
            card = build_card(cfg, rates, note, args.e_mac, args.e_ac)
        except (ValueError, TypeError) as e:
            raise CardError(str(e)) from e
        if args.plot is not None:
            try:
                plot_energy(card, args.plot)
            except OSError as e:
                raise CardFileError(f"cannot write --plot {args.plot}: {e.strerror or e}") from e
    except CardError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1 if isinstance(e, CardFileError) else 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(card, indent=1))
    else:
        print(format_card(card, layers=args.layers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
