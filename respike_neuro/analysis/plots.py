"""Figures of the analysis notebooks: spike rates, rasters, energy, PyTorch vs Lava (attention: attention.py).

Every function takes plain data (dicts of floats, numpy arrays), returns a matplotlib `Figure`
and, given `path`, saves it as PNG and closes nothing else. Figures are built with
`matplotlib.figure.Figure` (no pyplot state), so they render with the Agg canvas whatever backend
the caller has selected and never open a window. Helpers that extract what is plotted
(`raster_events`, `spike_agreement`) live here too, so notebooks stay thin.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

# Table 3 of the paper (Sec. 5.2, 16 frames at 224^2), the rows other than ReSpike's (those are in
# analysis.energy.PAPER_TABLE3). FLOPs there are MACs; energy = 4.6 pJ x FLOPs + 0.9 pJ x SyOPs.
PAPER_TABLE3_BASELINES = {
    "ResNet-18 (2D ANN)": {"macs": 29.22e9, "syops": 0.0, "energy_mj": 134.40},
    "ResNet-50 (2D ANN)": {"macs": 66.29e9, "syops": 0.0, "energy_mj": 304.92},
    "C3D (3D ANN)": {"macs": 154.19e9, "syops": 0.0, "energy_mj": 709.27},
    "Res3D (3D ANN)": {"macs": 163.21e9, "syops": 0.0, "energy_mj": 750.78},
    "MS-ResNet-18* (SNN, UCF-101)": {"macs": 0.35e9, "syops": 3.27e9, "energy_mj": 4.55},
}
PAPER_SOURCE = "ReSpike paper, Table 3 (Sec. 5.2)"

COMPONENT_COLOURS = {
    "ann": "#4c72b0",
    "snn_spike": "#dd8452",
    "snn_dense": "#c44e52",
    "fusion": "#55a868",
    "head": "#8172b3",
}


# -- helpers ---------------------------------------------------------------------------------------
def save(fig: Figure, path: str | os.PathLike | None, dpi: int = 110) -> Figure:
    """Write `fig` to `path` (PNG, parent folders created) when a path is given; return the figure."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return fig


def _rates_table(name: str, rates: Any) -> dict[str, float]:
    if not isinstance(rates, Mapping) or not rates:
        raise ValueError(f"{name} must be a non-empty mapping layer -> rate, got {type(rates).__name__}")
    out = {}
    for k, v in rates.items():
        v = float(v)
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name}[{k!r}] = {v} is not a spike rate in [0, 1]")
        out[str(k)] = v
    return out


def _stage_of(layer: str) -> str:
    return layer.split(".")[0]


# -- spike rates -----------------------------------------------------------------------------------
def plot_layer_rates(
    rates: Mapping[str, Mapping[str, float]] | Mapping[str, float],
    *,
    title: str = "spike rate per LIF layer",
    path: str | os.PathLike | None = None,
) -> Figure:
    """Bars of spikes per neuron per timestep, one group per LIF layer.

    rates: {layer: rate} for one series, or {series label: {layer: rate}} for several (grouped bars,
    e.g. trained vs untrained, or PyTorch vs Lava); all series must name the same layers.
    """
    if rates and all(isinstance(v, Mapping) for v in rates.values()):
        series = {str(k): _rates_table(f"rates[{k!r}]", v) for k, v in rates.items()}
    else:
        series = {"rate": _rates_table("rates", rates)}
    layers = list(next(iter(series.values())))
    for label, table in series.items():
        if list(table) != layers:
            raise ValueError(f"series {label!r} names layers {list(table)[:3]}..., expected {layers[:3]}...")
    fig = Figure(figsize=(max(6.0, 0.45 * len(layers) + 2), 3.8))
    ax = fig.add_subplot()
    x = np.arange(len(layers))
    width = 0.8 / len(series)
    for i, (label, table) in enumerate(series.items()):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, [table[k] for k in layers], width, label=label)
    stages = [_stage_of(k) for k in layers]
    for i in range(1, len(layers)):
        if stages[i] != stages[i - 1]:
            ax.axvline(i - 0.5, color="0.7", lw=0.8, ls=":")
    ax.set_xticks(x, layers, rotation=55, ha="right", fontsize=8)
    ax.set_ylabel("spikes / neuron / timestep")
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def raster_events(spikes: np.ndarray, neurons: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pick `neurons` neurons of a spike array (T, ...) and return (their flat indices, spikes (n, T)).

    Half are the most active neurons, half drawn at random among those that spiked at least once
    (a raster of silent neurons shows nothing; one of only the busiest hides the sparsity).
    """
    spikes = np.asarray(spikes)
    if spikes.ndim < 2:
        raise ValueError(f"spikes must be (T, ...) with at least one neuron axis, got shape {spikes.shape}")
    if isinstance(neurons, bool) or not isinstance(neurons, int) or neurons < 1:
        raise ValueError(f"neurons must be a positive int, got {neurons!r}")
    flat = (spikes.reshape(spikes.shape[0], -1) != 0).T  # (neurons, T)
    counts = flat.sum(1)
    active = np.flatnonzero(counts)
    if active.size == 0:
        chosen = np.arange(min(neurons, flat.shape[0]))
    else:
        top = active[np.argsort(-counts[active], kind="stable")][: neurons // 2 or 1]
        rest = np.setdiff1d(active, top)
        rng = np.random.default_rng(seed)
        extra = rng.choice(rest, size=min(neurons - top.size, rest.size), replace=False) if rest.size else []
        chosen = np.sort(np.concatenate([top, np.asarray(extra, dtype=int)]))
    return chosen, flat[chosen]


def plot_spike_raster(
    layers: Mapping[str, np.ndarray],
    *,
    steps_per_segment: int,
    neurons: int = 24,
    title: str = "spike raster",
    path: str | os.PathLike | None = None,
) -> Figure:
    """One raster panel per LIF layer: dots at (timestep, neuron); dashed lines at segment boundaries
    (where every membrane is reset). layers: {name: spikes (T, C, H, W) over consecutive segments}."""
    if not layers:
        raise ValueError("layers must name at least one LIF layer")
    if steps_per_segment < 1:
        raise ValueError(f"steps_per_segment must be >= 1, got {steps_per_segment}")
    fig = Figure(figsize=(7.5, 1.9 * len(layers) + 0.6))
    axes = fig.subplots(len(layers), 1, squeeze=False)[:, 0]
    for ax, (name, spikes) in zip(axes, layers.items()):
        spikes = np.asarray(spikes)
        idx, events = raster_events(spikes, neurons)
        t_total = spikes.shape[0]
        rows, cols = np.nonzero(events)
        ax.scatter(cols, rows, marker="|", s=70, color="k", linewidths=1.4)
        for b in range(steps_per_segment, t_total, steps_per_segment):
            ax.axvline(b - 0.5, color="tab:red", lw=0.8, ls="--")
        ax.set_xlim(-0.5, t_total - 0.5)
        ax.set_ylim(-0.5, len(idx) - 0.5)
        ax.set_ylabel("neuron")
        rate = float((spikes != 0).mean())
        ax.set_title(f"{name}: {len(idx)} of {spikes[0].size} neurons, layer rate {rate:.3f}", fontsize=9)
        ax.set_xticks(range(t_total))
    axes[-1].set_xlabel(f"timestep (segments of {steps_per_segment} residual frames, red: reset)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def plot_rates_vs_stride(
    rates: Mapping[int, Mapping[str, float]],
    *,
    title: str = "spike rate vs stride s",
    path: str | os.PathLike | None = None,
) -> Figure:
    """Per-stage mean rate (lines) and every LIF layer (faint) against the stride s."""
    if not rates:
        raise ValueError("rates must map at least one stride to per-layer rates")
    strides = sorted(int(s) for s in rates)
    tables = {s: _rates_table(f"rates[{s}]", rates[s]) for s in strides}
    layers = list(tables[strides[0]])
    for s in strides:
        if set(tables[s]) != set(layers):
            raise ValueError(f"stride {s} has different LIF layers than stride {strides[0]}")
    fig = Figure(figsize=(6.0, 3.8))
    ax = fig.add_subplot()
    for k in layers:
        ax.plot(strides, [tables[s][k] for s in strides], color="0.8", lw=0.8)
    for stage in dict.fromkeys(_stage_of(k) for k in layers):
        members = [k for k in layers if _stage_of(k) == stage]
        ax.plot(strides, [np.mean([tables[s][k] for k in members]) for s in strides], "o-", label=stage)
    ax.plot(strides, [np.mean(list(tables[s].values())) for s in strides], "k^--", label="all layers")
    ax.set_xticks(strides)
    ax.set_xlabel("stride s (1 key frame + s-1 residual frames per segment)")
    ax.set_ylabel("spikes / neuron / timestep")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)


# -- energy ----------------------------------------------------------------------------------------
def paper_compatible_components(breakdown: Mapping[str, Any]) -> dict[str, float]:
    """mJ per component of the paper-compatible total of `analysis.energy.energy_breakdown`."""
    em, p = breakdown["energy_model"], breakdown["paper_compatible"]
    return {
        "ann": p["ann_conv_macs"] * em["e_mac_pj"] * 1e-9,
        "snn_spike": p["syops"] * em["e_ac_pj"] * 1e-9,
        "snn_dense": 0.0,
        "fusion": p["fusion_macs"] * em["e_mac_pj"] * 1e-9,
        "head": 0.0,
    }


def plot_energy_breakdown(
    breakdowns: Mapping[str, Mapping[str, Any]],
    *,
    title: str = "energy per clip by component",
    path: str | os.PathLike | None = None,
) -> Figure:
    """Stacked bars, paper-compatible beside complete, for each labelled `energy_breakdown` dict."""
    from respike_neuro.analysis.ops import COMPONENT_TITLES

    if not breakdowns:
        raise ValueError("breakdowns must hold at least one energy_breakdown() result")
    labels, stacks = [], []
    for name, b in breakdowns.items():
        for key in ("components", "paper_compatible", "energy_model", "complete"):
            if key not in b:
                raise ValueError(f"breakdowns[{name!r}] is not an energy_breakdown() result (no {key!r})")
        labels += [f"{name}\npaper-compatible", f"{name}\ncomplete"]
        complete = {c: b["components"][c]["energy_mj"] for c in COMPONENT_TITLES}
        stacks += [paper_compatible_components(b), complete]
    fig = Figure(figsize=(max(5.0, 1.7 * len(labels) + 1.5), 4.2))
    ax = fig.add_subplot()
    bottom = np.zeros(len(labels))
    for c, ctitle in COMPONENT_TITLES.items():
        vals = np.array([s[c] for s in stacks])
        ax.bar(labels, vals, bottom=bottom, label=ctitle, color=COMPONENT_COLOURS.get(c))
        bottom += vals
    for i, total in enumerate(bottom):
        ax.text(i, total, _fmt_mj(total), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("energy per clip (mJ, 45 nm)")
    ax.set_title(title)
    ax.tick_params(axis="x", labelsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return save(fig, path)


def _fmt_mj(value: float) -> str:
    return f"{value:.3g} mJ" if value >= 1e-3 else f"{value * 1e3:.3g} uJ"


def plot_energy_comparison(
    rows: Mapping[str, float],
    *,
    ours: Sequence[str] = (),
    title: str = "energy per clip",
    path: str | os.PathLike | None = None,
) -> Figure:
    """Horizontal bars (log scale) of mJ per clip; labels in `ours` are highlighted."""
    if not rows:
        raise ValueError("rows must map at least one model label to its energy in mJ")
    names = list(rows)
    vals = np.array([float(rows[n]) for n in names])
    if not np.all(np.isfinite(vals)) or np.any(vals <= 0):
        raise ValueError("every energy must be a finite positive number of mJ (log axis)")
    unknown = sorted(set(ours) - set(names))
    if unknown:
        raise ValueError(f"ours names rows that do not exist: {unknown}")
    fig = Figure(figsize=(7.0, 0.42 * len(names) + 1.4))
    ax = fig.add_subplot()
    colours = ["tab:orange" if n in ours else "tab:gray" for n in names]
    y = np.arange(len(names))[::-1]
    ax.barh(y, vals, color=colours)
    for yi, v in zip(y, vals):
        ax.text(v * 1.05, yi, f"{v:.1f}", va="center", fontsize=8)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(right=vals.max() * 4)
    ax.set_xlabel("energy per clip (mJ, 45 nm, log scale)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def plot_accuracy_energy(
    strides: Sequence[int],
    accuracy: Sequence[float],
    energy_mj: Mapping[str, Sequence[float]],
    *,
    chance: float | None = None,
    title: str = "accuracy and energy vs stride s",
    path: str | os.PathLike | None = None,
) -> Figure:
    """The paper's Fig. 5 shape: accuracy per s (bars, left) and energy per s (lines, right axis).

    energy_mj: {label: one value per stride}, e.g. paper-compatible and complete totals.
    """
    strides = [int(s) for s in strides]
    acc = np.asarray(accuracy, dtype=float)
    if len(strides) == 0 or acc.shape != (len(strides),):
        raise ValueError(f"need one accuracy per stride: {len(strides)} strides, accuracy shape {acc.shape}")
    if np.any((acc < 0) | (acc > 1)):
        raise ValueError("accuracy values must be fractions in [0, 1]")
    for label, vals in energy_mj.items():
        if len(vals) != len(strides):
            raise ValueError(f"energy_mj[{label!r}] has {len(vals)} values for {len(strides)} strides")
    fig = Figure(figsize=(8.5, 3.6))
    ax_acc, ax_e = fig.subplots(1, 2)
    x = np.arange(len(strides))
    ax_acc.bar(x, 100 * acc, color="tab:blue", width=0.6)
    for xi, a in zip(x, acc):
        ax_acc.text(xi, 100 * a, f"{100 * a:.1f}", ha="center", va="bottom", fontsize=8)
    if chance is not None:
        ax_acc.axhline(100 * chance, color="k", ls=":", lw=1, label=f"chance ({100 * chance:.0f}%)")
        ax_acc.legend(fontsize=8, loc="lower right")
    ax_acc.set_xticks(x, [f"s={s}" for s in strides])
    ax_acc.set_ylabel("test top-1 (%)")
    ax_acc.set_title("accuracy")
    for label, vals in energy_mj.items():
        ax_e.plot(x, np.asarray(vals, dtype=float) * 1e3, "o-", label=label)
    ax_e.set_xticks(x, [f"s={s}" for s in strides])
    ax_e.set_ylabel("energy per clip (uJ, 45 nm)")
    ax_e.set_title("energy")
    ax_e.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save(fig, path)


# -- deployment ------------------------------------------------------------------------------------
def spike_agreement(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Fraction of (neuron, timestep) pairs where two runs agree on spike / no spike, per LIF layer."""
    missing = sorted(set(a) ^ set(b))
    if missing:
        raise ValueError(f"the two runs name different LIF layers: {missing[:4]}")
    out = {}
    for k in a:
        x, y = np.asarray(a[k]) != 0, np.asarray(b[k]) != 0
        if x.shape != y.shape:
            raise ValueError(f"layer {k!r}: spike arrays differ in shape, {x.shape} vs {y.shape}")
        out[k] = float((x == y).mean())
    return out


def plot_agreement(
    agreement: Mapping[str, Mapping[str, float]],
    *,
    title: str = "PyTorch vs Lava: spike agreement per LIF layer",
    path: str | os.PathLike | None = None,
) -> Figure:
    """Grouped bars of 1 - agreement (mismatching fraction, log scale, exact matches drawn at the
    floor and labelled) per LIF layer, one series per Lava mode ({"float": {...}, "fixed": {...}})."""
    if not agreement:
        raise ValueError("agreement must map at least one mode to per-layer agreement fractions")
    modes = list(agreement)
    layers = list(agreement[modes[0]])
    for m in modes:
        if list(agreement[m]) != layers:
            raise ValueError(f"mode {m!r} names different LIF layers")
        _rates_table(f"agreement[{m!r}]", agreement[m])
    floor = 1e-6
    fig = Figure(figsize=(max(6.0, 0.5 * len(layers) + 2), 3.8))
    ax = fig.add_subplot()
    x = np.arange(len(layers))
    width = 0.8 / len(modes)
    for i, m in enumerate(modes):
        miss = np.array([1.0 - agreement[m][k] for k in layers])
        pos = x + (i - (len(modes) - 1) / 2) * width
        ax.bar(pos, np.maximum(miss, floor), width, label=f"Lava {m}", bottom=0)
        for p, v in zip(pos, miss):
            if v == 0:
                ax.text(p, floor * 1.3, "=", ha="center", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylim(floor * 0.8, 1.0)
    ax.set_xticks(x, layers, rotation=55, ha="right", fontsize=8)
    ax.set_ylabel("fraction of spikes that differ\n('=' : identical)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def plot_resources(
    report: Mapping[str, Any],
    *,
    traffic: Mapping[str, Any] | None = None,
    title: str = "Loihi 2 resource estimate",
    path: str | os.PathLike | None = None,
) -> Figure:
    """Neurons, synapses and neuro-cores per population of a `loihi2_report(...).to_dict()`, and the
    host <-> chip traffic per timestep per port (from the report, or a bridge result's `traffic`)."""
    for key in ("nodes", "totals", "graded_bits"):
        if key not in report:
            raise ValueError(f"report is not a ResourceReport.to_dict() result (no {key!r})")
    pops = [n for n in report["nodes"] if n["lif_neurons"] + n["graded_neurons"] > 0]
    if not pops:
        raise ValueError("report has no neuron populations to plot")
    names = [n["name"] for n in pops]
    fig = Figure(figsize=(12.0, 4.2))
    ax_n, ax_c, ax_t = fig.subplots(1, 3, gridspec_kw={"width_ratios": [3, 2, 1.6]})
    y = np.arange(len(names))[::-1]
    ax_n.barh(y + 0.2, [n["lif_neurons"] + n["graded_neurons"] for n in pops], 0.4, label="neurons")
    syn = {n["name"]: 0 for n in pops}
    for n in report["nodes"]:
        host = n.get("hosted_by") or n["name"]
        if host in syn:
            syn[host] += n["synapses"]
    ax_n.barh(y - 0.2, [max(syn[k], 1) for k in names], 0.4, label="synapses (incoming)")
    ax_n.set_xscale("log")
    ax_n.set_yticks(y, names, fontsize=7)
    ax_n.legend(fontsize=7)
    t = report["totals"]
    ax_n.set_title(f"{t['neurons']:,} neurons, {t['synapses']:,} synapses", fontsize=9)
    ax_c.barh(y, [n["cores"] for n in pops], color="tab:green")
    ax_c.set_yticks(y, [""] * len(names))
    ax_c.set_title(f"neuro-cores: {t['cores']} ({t['chips']} chip(s))", fontsize=9)
    if traffic is not None:
        ins, outs = dict(traffic["ports_in"]), dict(traffic["ports_out"])
        bits = traffic.get("graded_bits", report["graded_bits"])
    else:
        bits = report["graded_bits"]
        ins = {n["name"]: n["host_in_bytes"] * 8 // bits for n in report["nodes"] if n["host_in_bytes"]}
        outs = {n["name"]: n["host_out_bytes"] * 8 // bits for n in report["nodes"] if n["host_out_bytes"]}
    ports = list(ins) + list(outs)
    kib = [v * bits / 8 / 1024 for v in list(ins.values()) + list(outs.values())]
    yp = np.arange(len(ports))[::-1]
    ax_t.barh(yp, kib, color=["tab:blue"] * len(ins) + ["tab:orange"] * len(outs))
    ax_t.set_yticks(yp, [f"{p} ({'in' if i < len(ins) else 'out'})" for i, p in enumerate(ports)], fontsize=7)
    ax_t.set_xlabel(f"KiB per timestep ({bits}-bit payloads)")
    ax_t.set_title(f"host traffic: {sum(kib):.1f} KiB / step", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save(fig, path)
