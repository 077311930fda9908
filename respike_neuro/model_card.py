"""The model card of a ReSpike configuration: built as a JSON-ready dict, shown as text or a figure.

`build_card` gathers parameters, stage shapes, operation counts and energy (analysis.ops,
analysis.energy) for given spike rates; `format_card` and `plot_energy` present it. The command
line around it (configs, checkpoints, measured rates) is summary.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from respike_neuro.config import ModelConfig


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
    """The card as text: model, parameters, stage shapes, operations and energy, optionally per layer."""
    lines = _summary_lines(card) + _energy_lines(card) + _difference_lines(card)
    if layers:
        lines += _layer_lines(card)
    return "\n".join(lines)


def _summary_lines(card: dict[str, Any]) -> list[str]:
    """Model, clip, parameters and stage shapes."""
    cfg = card["model_config"]
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
    return lines


def _energy_lines(card: dict[str, Any]) -> list[str]:
    """Spike rates, operations and energy per component, and the two totals (and the paper's)."""
    from respike_neuro.analysis.ops import COMPONENT_TITLES

    e = card["energy"]
    sc, u, ed = _scale(card)
    r = card["spike_rates"]
    if r["mode"] == "assumed":
        rate_line = f"ASSUMED {r['assumed_rate']:g} spikes/neuron/timestep for every LIF layer ({r['note']})"
    else:
        rate_line = (
            f"{r['note']}; effective rate (SyOPs / spike-driven MACs) {r.get('effective_rate', 0):.4f}"
        )
    lines = [
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
    return lines


def _difference_lines(card: dict[str, Any]) -> list[str]:
    """What the complete count adds to the paper-compatible one, term by term, and why."""
    e = card["energy"]
    sc, u, ed = _scale(card)
    lines = ["", "Complete minus paper-compatible, and why"]
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
    return lines


def _layer_lines(card: dict[str, Any]) -> list[str]:
    lines = [
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
    return lines


def plot_energy(card: dict[str, Any], path: Path) -> None:
    """Stacked bars: energy per component, paper-compatible vs complete."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from respike_neuro.analysis.ops import COMPONENT_TITLES
    from respike_neuro.analysis.plots import paper_compatible_components

    e = card["energy"]
    paper = paper_compatible_components(e)
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
    from respike_neuro.fileio import save_pyplot_figure

    save_pyplot_figure(fig, path, dpi=120)
