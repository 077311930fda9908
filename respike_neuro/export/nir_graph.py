"""The spiking branch of a ReSpike model as one `nir.NIRGraph`, exactly as docs/nir-contract.md says.

Node keys are stable names (`stem.conv`, `layer{i}.{j}.lif1`, ...); BN is folded into the convs
(see fold.py); a residual add is several edges into a Scale(ones) junction `layer{i}.{j}.out`;
the host-side cross-attention leaves through Output `stage{k}_out` and re-enters through Input
`stage{k}_in`. Every LIF obeys  v <- beta v + I ; spike if v > theta ; v <- 0  and is written
for NIR's forward-Euler LIF at step dt (graph metadata 'dt'):

    tau = dt / (1 - beta),  r = 1 / (1 - beta),  v_leak = 0,  v_threshold = theta,  v_reset = 0
    =>  v + dt/tau (-v + r I) = beta v + I.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np
import torch
from torch import nn

from respike_neuro.export.fold import fold_snn

__all__ = ["FORMAT_VERSION", "DEFAULT_DT", "GraphSummary", "build_nir_graph", "lif_keys", "summarize"]

FORMAT_VERSION = "1"
DEFAULT_DT = 1e-4  # the dt snnTorch's exporter assumes; any dt > 0 gives the same neuron
RESET = "zero, same step"
NEURON = "v[t] = beta*v[t-1] + I[t]; spike if v[t] > theta; v[t] <- 0 after a spike (same step)"


def _snn_timesteps(cfg: Any) -> tuple[int, str]:
    """Timesteps per segment and what the input port carries, for the model's input mode."""
    if cfg.inputs in ("key+res", "res"):
        return cfg.stride - 1, "residual frames (frame j - key frame, j = 1..s-1), normalised"
    if cfg.inputs == "all":
        return cfg.stride, "every normalised frame of the segment"
    return cfg.frames // cfg.stride, "the clip's normalised key frames as one sequence"


def _conv_out(hw: tuple[int, int], conv: nn.Conv2d) -> tuple[int, int]:
    return tuple(  # type: ignore[return-value]
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, k, s, p, d in zip(hw, conv.kernel_size, conv.stride, conv.padding, conv.dilation)
    )


class _Builder:
    def __init__(self, dtype: np.dtype, dt: float) -> None:
        self.nodes: dict[str, nir.NIRNode] = {}
        self.edges: list[tuple[str, str]] = []
        self.dtype, self.dt = dtype, dt

    def edge(self, src: str, dst: str) -> None:
        self.edges.append((src, dst))

    def conv(self, key: str, conv: nn.Conv2d, src: str, hw: tuple[int, int]) -> tuple[int, int]:
        self.nodes[key] = nir.Conv2d(
            input_shape=hw,
            weight=conv.weight.detach().cpu().numpy().astype(self.dtype),
            stride=tuple(conv.stride),
            padding=tuple(conv.padding),
            dilation=tuple(conv.dilation),
            groups=int(conv.groups),
            bias=conv.bias.detach().cpu().numpy().astype(self.dtype),
        )
        self.edge(src, key)
        return _conv_out(hw, conv)

    def lif(self, key: str, lif: nn.Module, src: str, shape: tuple[int, ...]) -> None:
        beta, theta = float(lif.beta), float(lif.threshold)
        ones = np.ones(shape, dtype=self.dtype)
        self.nodes[key] = nir.LIF(
            tau=ones * (self.dt / (1.0 - beta)),
            r=ones * (1.0 / (1.0 - beta)),
            v_leak=np.zeros(shape, self.dtype),
            v_threshold=ones * theta,
            v_reset=np.zeros(shape, self.dtype),
        )
        self.edge(src, key)

    def block(self, p: str, block: nn.Module, src: str, c: int, hw: tuple[int, int]):
        """One residual block `p` (lif1 -> conv1 -> lif2 -> conv2, + shortcut) into node `{p}.out`;
        returns that node's channels and grid."""
        self.lif(f"{p}.lif1", block.lif1, src, (c, *hw))
        hw2 = self.conv(f"{p}.conv1", block.conv1, f"{p}.lif1", hw)
        c2 = block.conv1.out_channels
        self.lif(f"{p}.lif2", block.lif2, f"{p}.conv1", (c2, *hw2))
        self.conv(f"{p}.conv2", block.conv2, f"{p}.lif2", hw2)
        self.nodes[f"{p}.out"] = nir.Scale(scale=np.ones((c2, *hw2), self.dtype))
        self.edge(f"{p}.conv2", f"{p}.out")
        if block.shortcut is None:
            self.edge(src, f"{p}.out")
            return c2, hw2
        pool, sc_conv = block.shortcut
        sc_src, sc_hw = src, hw
        if isinstance(pool, nn.AvgPool2d):
            k = nn.modules.utils._pair(pool.kernel_size)
            self.nodes[f"{p}.shortcut.pool"] = nir.AvgPool2d(
                kernel_size=np.array(k), stride=np.array(k), padding=np.array([0, 0])
            )
            self.edge(src, f"{p}.shortcut.pool")
            sc_src, sc_hw = f"{p}.shortcut.pool", (hw[0] // k[0], hw[1] // k[1])
        out_hw = self.conv(f"{p}.shortcut.conv", sc_conv, sc_src, sc_hw)
        if out_hw != hw2:
            raise ValueError(f"block {p}: shortcut output {out_hw} does not match the main path {hw2}")
        self.edge(f"{p}.shortcut.conv", f"{p}.out")
        return c2, hw2


def lif_keys(graph_or_model: Any) -> list[str]:
    """Node keys of the LIF layers, in network order (graph) or block order (model)."""
    if isinstance(graph_or_model, nir.NIRGraph):
        return [k for k, n in graph_or_model.nodes.items() if isinstance(n, nir.LIF)]
    snn = graph_or_model.snn
    return [
        f"layer{i}.{j}.{name}"
        for i, stage in enumerate(snn.stages, 1)
        for j in range(len(stage))
        for name in ("lif1", "lif2")
    ]


def build_nir_graph(
    model: nn.Module,
    *,
    dt: float = DEFAULT_DT,
    dtype: Any = np.float64,
    checkpoint_sha256: str = "",
    host_ports: bool | None = None,
) -> nir.NIRGraph:
    """The BN-folded spiking branch of a ReSpike `model` as a contract-conforming NIR graph.

    host_ports: emit stage1..4_out / stage2..4_in for the host cross-attention; default: exactly
    when the model has fusion modules (hybrid with attention). Without them the stages chain
    directly and only residual_in and stage4_out exist. Parameters are written in `dtype`
    (float64 by default: folding is done in float64 and nothing is rounded).
    """
    cfg = getattr(model, "cfg", None)
    snn = getattr(model, "snn", None)
    if cfg is None:
        raise TypeError(f"model must be a ReSpike model (with .cfg and .snn), got {type(model).__name__}")
    if snn is None:
        raise ValueError(
            f"the model has no spiking branch (architecture={cfg.architecture!r}); nothing to export"
        )
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive finite number, got {dt!r}")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"dtype must be a floating-point type, got {dtype}")
    if host_ports is None:
        host_ports = getattr(model, "fusions", None) is not None
    folded = fold_snn(snn, dtype=torch.float64)  # checks every layer, raises on unknown ones

    b = _Builder(dtype, float(dt))
    res = cfg.resolution
    b.nodes["residual_in"] = nir.Input(input_type={"input": np.array([3, res, res])})
    hw = b.conv("stem.conv", folded.stem, "residual_in", (res, res))
    src, c = "stem.conv", folded.stem.out_channels
    stage_shapes: dict[str, list[int]] = {}
    inputs = {"residual_in": [3, res, res]}
    outputs: dict[str, list[int]] = {}
    n_stages = len(folded.stages)
    for i, stage in enumerate(folded.stages, start=1):
        if host_ports and i > 1:
            b.nodes[f"stage{i}_in"] = nir.Input(input_type={"input": np.array([c, *hw])})
            src = f"stage{i}_in"
            inputs[src] = [c, *hw]
        for j, block in enumerate(stage):
            p = f"layer{i}.{j}"
            c, hw = b.block(p, block, src, c, hw)
            src = f"{p}.out"
        stage_shapes[f"stage{i}"] = [c, *hw]
        if host_ports or i == n_stages:
            b.nodes[f"stage{i}_out"] = nir.Output(output_type={"output": np.array([c, *hw])})
            b.edge(src, f"stage{i}_out")
            outputs[f"stage{i}_out"] = [c, *hw]

    metadata = _metadata(cfg, dt, host_ports, stage_shapes, inputs, outputs, checkpoint_sha256)
    graph = nir.NIRGraph(nodes=b.nodes, edges=b.edges, metadata=metadata)
    graph.validate_structure()
    return graph


def _metadata(cfg: Any, dt: float, host_ports: bool, stage_shapes: dict, inputs: dict, outputs: dict,
              checkpoint_sha256: str) -> dict[str, Any]:
    """The graph's metadata: the contract's neuron, timing and port description (docs/nir-contract.md)."""
    steps, input_meaning = _snn_timesteps(cfg)
    return {
        "format_version": FORMAT_VERSION,
        "dt": float(dt),
        "beta": float(cfg.beta),
        "theta": float(cfg.threshold),
        "reset": RESET,
        "neuron": NEURON,
        "stride": int(cfg.stride),
        "timesteps_per_segment": int(steps),
        "snn_input": input_meaning,
        "host_fusion": int(bool(host_ports)),
        "stage_shapes": json.dumps(stage_shapes),
        "input_ports": json.dumps(inputs),
        "output_ports": json.dumps(outputs),
        "model_config": json.dumps(cfg.to_dict(), sort_keys=True),
        "checkpoint_sha256": checkpoint_sha256,
        "exporter": "respike_neuro.export.nir_graph",
    }


# --------------------------------------------------------------------------- summary


@dataclass
class GraphSummary:
    """What the CLI prints: counts per node type, edges, neurons, synapses, ports with shapes."""

    node_types: dict[str, int]
    edges: int
    neurons: int
    synapses: int
    parameters: int
    inputs: dict[str, list[int]] = field(default_factory=dict)
    outputs: dict[str, list[int]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        types = ", ".join(f"{n} {t}" for t, n in sorted(self.node_types.items()))
        out = [
            f"nodes: {sum(self.node_types.values())} ({types})",
            f"edges: {self.edges}",
            f"neurons (LIF): {self.neurons:,}",
            f"synapses (conv/pool connections per timestep): {self.synapses:,}",
            f"parameters (weights + biases): {self.parameters:,}",
        ]
        out += [f"input  {k}: {tuple(v)}" for k, v in self.inputs.items()]
        out += [f"output {k}: {tuple(v)}" for k, v in self.outputs.items()]
        return out


def _valid_taps(n_in: int, n_out: int, k: int, s: int, p: int, d: int) -> int:
    """Sum over output positions of the kernel taps that land inside the (unpadded) input."""
    return sum(1 for o in range(n_out) for u in range(k) if 0 <= o * s - p + u * d < n_in)


def _shape(types: Any, port: str) -> list[int]:
    return [int(v) for v in np.atleast_1d(np.asarray(types[port]))]


def summarize(graph: nir.NIRGraph) -> GraphSummary:
    """Counts for a graph whose types are known (run graph.infer_types() on a graph read from disk)."""
    types: dict[str, int] = {}
    neurons = synapses = params = 0
    for _key, node in graph.nodes.items():
        types[type(node).__name__] = types.get(type(node).__name__, 0) + 1
        if isinstance(node, nir.LIF):
            neurons += int(np.prod(_shape(node.output_type, "output")))
        elif isinstance(node, (nir.Conv2d, nir.AvgPool2d)):
            c_in, h, w = _shape(node.input_type, "input")
            c_out, ho, wo = _shape(node.output_type, "output")
            if isinstance(node, nir.Conv2d):
                kh, kw = node.weight.shape[2:]
                st, pd, dl = (
                    np.broadcast_to(np.asarray(v), (2,)) for v in (node.stride, node.padding, node.dilation)
                )
                fan = node.weight.shape[1]
                params += int(node.weight.size + np.asarray(node.bias).size)
            else:
                kh, kw = (int(v) for v in np.broadcast_to(node.kernel_size, (2,)))
                st, pd, dl = np.broadcast_to(node.stride, (2,)), np.broadcast_to(node.padding, (2,)), (1, 1)
                fan, c_out = 1, c_in
            taps = _valid_taps(h, ho, int(kh), int(st[0]), int(pd[0]), int(dl[0])) * _valid_taps(
                w, wo, int(kw), int(st[1]), int(pd[1]), int(dl[1])
            )
            synapses += c_out * fan * taps
    ins = {k: _shape(n.input_type, "input") for k, n in graph.nodes.items() if isinstance(n, nir.Input)}
    outs = {k: _shape(n.output_type, "output") for k, n in graph.nodes.items() if isinstance(n, nir.Output)}
    return GraphSummary(types, len(graph.edges), neurons, synapses, params, ins, outs)


def graph_nbytes(graph: nir.NIRGraph) -> int:
    """Bytes of the arrays in a NIR graph plus 1 MB of HDF5 structure: its file size, near enough
    (the writers check free space with it: h5py crashes on a full disk)."""
    total = 1 << 20
    for node in graph.nodes.values():
        for value in vars(node).values():
            if isinstance(value, np.ndarray):
                total += value.nbytes
            elif isinstance(value, nir.NIRGraph):
                total += graph_nbytes(value)
    return total
