"""Loihi 2 resource and host-traffic estimate for an exported spiking-branch NIR graph.

Pure numpy + nir (Lava side: no torch).  The graph follows docs/nir-contract.md: Input/Output ports,
Conv2d, AvgPool2d (SumPool2d also accepted), LIF and Scale junctions; several edges into a node sum.

Model of the mapping (an estimate, not a placement):
- Neurons.  Each LIF element is one spiking neuron (1-bit messages).  Each Scale junction element is
  one graded neuron (it sums its inputs and sends a `graded_bits` payload).  Synapses cannot chain, so
  a Conv2d/AvgPool2d whose output does not land in exactly one neuron node (it fans out, feeds another
  synaptic node, or leaves through an Output) gets a graded *carrier* neuron per output element.
  Input ports inject into the axons of their consumers (host traffic, no neuro-core neurons).
- Synapses count connections that exist on the chip: padding taps are excluded, so a conv has
  C_out * C_in/groups * (valid (out, tap) pairs along H) * (along W)  <=  C_out*H_out*W_out*C_in*kH*kW.
  An edge from a neuron (or port) into a neuron node is a one-to-one connection (prod(shape)).
- Weight memory, 8-bit mantissa per stored weight, given both ways:
  per-connection (every synapse stores its weight) and shared (a conv stores its kernel once,
  C_out*C_in/groups*kH*kW weights; pools and one-to-one edges store one depthwise weight per channel).
  Public record on Loihi 2 convolution: lava-nc PR #341 (2022) "adds minor changes needed to support
  [the] convolution feature of Loihi 2", and Intel's Loihi 2 brief (2021) describes richer synaptic
  compression including convolutional connectivity (recalled, not re-checked from this machine).  How
  shared kernels are laid out in core memory is in Intel's closed backend, so the core estimate
  ASSUMES shared kernels (`weight_sharing=True`, split by output channel across cores) and reports the
  per-connection figure beside it as the worst case (`weight_sharing=False` uses it for cores).
- Neuro-cores per population (a neuron node with the synapses that terminate in it; a synapse lives in
  its destination's core) = max(ceil(neurons / neurons_per_core), ceil(synaptic bits / bits_per_core));
  the total is the sum (no two populations share a core), chips = ceil(total / 128).
- Host <-> chip traffic per timestep: every Input port sends prod(shape) payloads of `graded_bits`;
  every Output port returns prod(shape) payloads of its source's message width.  For the hybrid
  partition that is residual_in (3*H*W) + stage{2..4}_in in, stage{1..4}_out out; SNN-only has
  residual_in and stage4_out.

Known public data point on why host traffic matters: lava-dl's PilotNet LIF example runs at 409 frames/s
with the network on Loihi 2 but 17 frames/s when every frame streams from the host.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import nir
import numpy as np

from respike_neuro.graph import topological_order
from respike_neuro.sim.loihi import MAX_GRADED_BITS, MAX_WEIGHT_BITS


@dataclass(frozen=True)
class Loihi2Limits:
    """Public Loihi 2 figures the estimate uses (override to explore)."""

    # 128 neuro-cores per chip: Intel Loihi 2 brief (2021); open-neuromorphic.org Loihi 2 page.
    cores_per_chip: int = 128
    # up to 1M neurons per chip / 128 cores = 8192 neurons per neuro-core (Loihi 2 brief).
    neurons_per_core: int = 8192
    # Each Loihi 2 neuro-core has 192 KB of memory shared between synapses, neuron state and routing
    # (Loihi 2 brief spec table, recalled, not re-verified here); we budget 128 KiB of it for synapses,
    # the size of Loihi 1's dedicated synaptic memory.  120M synapses per chip (~0.94M per core) is
    # only reachable with compressed/low-precision weights.
    synaptic_bits_per_core: int = 128 * 1024 * 8
    # weight mantissa bits per stored weight (the per-layer exponent is negligible): at most 8; fewer for
    # a model trained for narrower synapses (respike_neuro/qat.py --weight-bits).
    weight_bits: int = MAX_WEIGHT_BITS

    def __post_init__(self) -> None:
        if not 1 <= self.weight_bits <= MAX_WEIGHT_BITS:
            raise ValueError(f"weight_bits must be in [1, {MAX_WEIGHT_BITS}] (Loihi 2 synapses), "
                             f"got {self.weight_bits}")

    def to_dict(self) -> dict[str, int]:
        return {"cores_per_chip": self.cores_per_chip, "neurons_per_core": self.neurons_per_core,
                "synaptic_bits_per_core": self.synaptic_bits_per_core, "weight_bits": self.weight_bits}


@dataclass
class NodeResources:
    """Resources of one graph node (synapse-only nodes have cores = 0: they live in `hosted_by`)."""

    name: str
    kind: str  # input | output | conv | pool | lif | junction
    shape: tuple[int, ...]
    lif_neurons: int = 0
    graded_neurons: int = 0  # junction neurons or carriers of a synaptic node
    synapses: int = 0
    stored_weights: int = 0  # distinct weights under weight sharing
    weight_bits_shared: int = 0
    weight_bits_per_connection: int = 0
    in_msg_bits: int = 0  # payload width arriving on this node's connections
    out_msg_bits: int = 0  # payload width of the messages this node's neurons send
    cores: int = 0
    hosted_by: str = ""
    host_in_bytes: int = 0
    host_out_bytes: int = 0

    @property
    def neurons(self) -> int:
        return self.lif_neurons + self.graded_neurons

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


@dataclass
class ResourceReport:
    """Per-node and total Loihi 2 resources plus host traffic for one NIR graph."""

    nodes: list[NodeResources]
    graded_bits: int
    weight_sharing: bool
    limits: Loihi2Limits
    timesteps_per_segment: int | None = None
    totals: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.nodes
        cores = sum(x.cores for x in n)
        t = {
            "lif_neurons": sum(x.lif_neurons for x in n),
            "graded_neurons": sum(x.graded_neurons for x in n),
            "synapses": sum(x.synapses for x in n),
            "stored_weights": sum(x.stored_weights for x in n),
            "weight_bits_shared": sum(x.weight_bits_shared for x in n),
            "weight_bits_per_connection": sum(x.weight_bits_per_connection for x in n),
            "cores": cores,
            "chips": math.ceil(cores / self.limits.cores_per_chip),
            "host_in_bytes_per_step": sum(x.host_in_bytes for x in n),
            "host_out_bytes_per_step": sum(x.host_out_bytes for x in n),
        }
        t["neurons"] = t["lif_neurons"] + t["graded_neurons"]
        t["host_bytes_per_step"] = t["host_in_bytes_per_step"] + t["host_out_bytes_per_step"]
        if self.timesteps_per_segment is not None:
            t["host_bytes_per_segment"] = t["host_bytes_per_step"] * self.timesteps_per_segment
        self.totals = t

    def node(self, name: str) -> NodeResources:
        for x in self.nodes:
            if x.name == name:
                return x
        raise KeyError(f"no node {name!r} in the report")

    def traffic(self, sent: Mapping[str, int], got: Mapping[str, int]) -> dict[str, Any]:
        """Host <-> chip traffic per logical timestep of a run, from the values each port carried
        (`sent` into the chip, `got` out of it), at the simulation's float64 and at this report's
        graded payload width, next to the report's own estimate."""
        bits = self.graded_bits
        v_in, v_out = sum(sent.values()), sum(got.values())
        tot = self.totals
        return {
            "values_in_per_step": v_in,
            "values_out_per_step": v_out,
            "sim_bytes_per_step": 8 * (v_in + v_out),  # float64 arrays through Lava's channels
            "loihi2_bytes_in_per_step": math.ceil(v_in * bits / 8),
            "loihi2_bytes_out_per_step": math.ceil(v_out * bits / 8),
            "graded_bits": bits,
            "report_bytes_in_per_step": tot["host_in_bytes_per_step"],
            "report_bytes_out_per_step": tot["host_out_bytes_per_step"],
            "ports_in": dict(sent),
            "ports_out": dict(got),
        }

    def to_dict(self) -> dict[str, Any]:
        return {"graded_bits": self.graded_bits, "weight_sharing": self.weight_sharing,
                "limits": self.limits.to_dict(), "timesteps_per_segment": self.timesteps_per_segment,
                "nodes": [x.to_dict() for x in self.nodes], "totals": dict(self.totals)}

    def format_table(self) -> str:
        """Plain-text table: one row per node, then totals and the assumptions behind them."""
        head = (f"{'node':<26} {'kind':<8} {'shape':<14} {'LIF':>9} {'graded':>9} {'synapses':>12} "
                f"{'W kbit sh':>10} {'W kbit pc':>11} {'msg in/out':>10} {'cores':>6} {'host B in/out':>15}")
        rows = [head, "-" * len(head)]
        for x in self.nodes:
            msg = f"{x.in_msg_bits or '-'}/{x.out_msg_bits or '-'}"
            host = f"{x.host_in_bytes or '-'}/{x.host_out_bytes or '-'}"
            rows.append(f"{x.name[:26]:<26} {x.kind:<8} {'x'.join(map(str, x.shape)):<14} {x.lif_neurons:>9} "
                        f"{x.graded_neurons:>9} {x.synapses:>12} {x.weight_bits_shared / 1000:>10.1f} "
                        f"{x.weight_bits_per_connection / 1000:>11.1f} {msg:>10} "
                        f"{x.cores if x.neurons else '-'!s:>6} {host:>15}")
        t = self.totals
        rows.append("-" * len(head))
        rows.append(f"neurons {t['neurons']:,} (LIF {t['lif_neurons']:,}, graded {t['graded_neurons']:,}); "
                    f"synapses {t['synapses']:,}; weight memory {t['weight_bits_shared'] / 8e3:,.1f} kB "
                    f"shared, {t['weight_bits_per_connection'] / 8e3:,.1f} kB per-connection")
        rows.append(f"neuro-cores {t['cores']:,} ({'shared' if self.weight_sharing else 'per-connection'} "
                    f"weights) -> {t['chips']} Loihi 2 chip(s)")
        seg = (f", {t['host_bytes_per_segment']:,} B per segment of {self.timesteps_per_segment} steps"
               if "host_bytes_per_segment" in t else "")
        rows.append(f"host traffic per timestep: {t['host_in_bytes_per_step']:,} B in, "
                    f"{t['host_out_bytes_per_step']:,} B out ({self.graded_bits}-bit graded payloads){seg}")
        lim = self.limits
        rows.append(f"assumes {lim.neurons_per_core} neurons and {lim.synaptic_bits_per_core / 8192:g} KiB "
                    f"synaptic memory per core, {lim.cores_per_chip} cores per chip, "
                    f"{lim.weight_bits}-bit weights")
        return "\n".join(rows)


# ------------------------------------------------------------------------------------------ internals
_NEURON_KINDS = ("lif", "junction")
_SYNAPTIC_KINDS = ("conv", "pool")


def _kind(name: str, node: Any) -> str:
    if isinstance(node, nir.NIRGraph):
        raise ValueError(f"node {name!r}: nested NIRGraph is not supported (flatten the graph first)")
    kinds = {nir.Input: "input", nir.Output: "output", nir.Conv2d: "conv", nir.AvgPool2d: "pool",
             nir.SumPool2d: "pool", nir.LIF: "lif", nir.Scale: "junction"}
    for cls, kind in kinds.items():
        if type(node) is cls:
            return kind
    raise ValueError(f"node {name!r}: unsupported NIR type {type(node).__name__} "
                     f"(supported: Input, Output, Conv2d, AvgPool2d, SumPool2d, LIF, Scale)")


def _pair(x: Any, name: str, what: str) -> tuple[int, int]:
    arr = np.atleast_1d(np.asarray(x)).astype(int).ravel()
    if arr.size == 1:
        return int(arr[0]), int(arr[0])
    if arr.size != 2:
        raise ValueError(f"node {name!r}: {what} must be one or two ints, got {x!r}")
    return int(arr[0]), int(arr[1])


def _valid_taps(n_in: int, n_out: int, k: int, stride: int, pad: int, dil: int) -> int:
    """(output position, kernel tap) pairs along one axis whose input index lies inside the map."""
    idx = np.arange(n_out)[:, None] * stride - pad + np.arange(k)[None, :] * dil
    return int(np.count_nonzero((idx >= 0) & (idx < n_in)))


def _window(name: str, in_shape: tuple[int, ...], k: tuple[int, int], s: tuple[int, int],
            pad: tuple[int, int], dil: tuple[int, int]) -> tuple[tuple[int, int], int]:
    """Output spatial size and valid (out, tap) pairs product for a sliding window on (C, H, W)."""
    out, taps = [], 1
    for ax in range(2):
        n = in_shape[1 + ax]
        o = (n + 2 * pad[ax] - dil[ax] * (k[ax] - 1) - 1) // s[ax] + 1
        if o < 1:
            raise ValueError(f"node {name!r}: window {k} does not fit input {in_shape}")
        out.append(o)
        taps *= _valid_taps(n, o, k[ax], s[ax], pad[ax], dil[ax])
    return (out[0], out[1]), taps


def _node_shape(name: str, kind: str, node: Any,
                in_shape: tuple[int, ...] | None) -> tuple[tuple[int, ...], int, int]:
    """(output shape, synapses per incoming edge, stored weights) for one node."""
    if kind == "input":
        shp = node.input_type.get("input")
        if shp is None:
            raise ValueError(f"node {name!r}: Input without a shape")
        return tuple(int(v) for v in np.asarray(shp).ravel()), 0, 0
    assert in_shape is not None
    if kind == "output":
        declared = node.output_type.get("output")
        if declared is not None and tuple(int(v) for v in np.asarray(declared).ravel()) != in_shape:
            raise ValueError(f"node {name!r}: Output declares shape {tuple(np.asarray(declared).ravel())}, "
                             f"receives {in_shape}")
        return in_shape, 0, 0
    if kind in _NEURON_KINDS:
        shp = tuple(int(v) for v in (node.r.shape if kind == "lif" else node.scale.shape))
        if shp != in_shape:
            raise ValueError(f"node {name!r}: parameter shape {shp} does not match its input {in_shape}")
        return shp, 0, 0
    if len(in_shape) != 3:
        raise ValueError(f"node {name!r}: expects a (C, H, W) input, got {in_shape}")
    if kind == "conv":
        w = np.asarray(node.weight)
        if w.ndim != 4:
            raise ValueError(f"node {name!r}: Conv2d weight must be (C_out, C_in/groups, kH, kW), "
                             f"got {w.shape}")
        groups = int(node.groups)
        c_out, c_in_g, kh, kw = (int(v) for v in w.shape)
        if c_in_g * groups != in_shape[0]:
            raise ValueError(f"node {name!r}: weight expects {c_in_g * groups} input channels, "
                             f"receives {in_shape[0]}")
        dil = _pair(node.dilation, name, "dilation")
        stride = _pair(node.stride, name, "stride")
        if isinstance(node.padding, str):
            if node.padding == "valid":
                pad = (0, 0)
            else:  # 'same' (stride 1): total padding d*(k-1), the smaller half in front as PyTorch does
                pad = ((dil[0] * (kh - 1)) // 2, (dil[1] * (kw - 1)) // 2)
        else:
            pad = _pair(node.padding, name, "padding")
        (ho, wo), taps = _window(name, in_shape, (kh, kw), stride, pad, dil)
        if isinstance(node.padding, str) and node.padding == "same":
            ho, wo = in_shape[1], in_shape[2]
        return (c_out, ho, wo), c_out * c_in_g * taps, int(w.size)
    # pool: depthwise window with one (shared) weight per channel and tap
    k = _pair(node.kernel_size, name, "kernel_size")
    (ho, wo), taps = _window(name, in_shape, k, _pair(node.stride, name, "stride"),
                             _pair(node.padding, name, "padding"), (1, 1))
    c = in_shape[0]
    return (c, ho, wo), c * taps, c * k[0] * k[1]


def _topological(graph: nir.NIRGraph) -> list[str]:
    return topological_order(list(graph.nodes), [(str(a), str(b)) for a, b in graph.edges])


def loihi2_report(graph: nir.NIRGraph, *, graded_bits: int = 16, weight_sharing: bool = True,
                  limits: Loihi2Limits | None = None) -> ResourceReport:
    """Estimate Loihi 2 neurons, synapses, weight memory, neuro-cores and host traffic for `graph`.

    `graded_bits` is the payload width of every real-valued stream (junctions, carriers, ports;
    lava-dl's SDNN default is 16, Loihi 2 allows up to 24).  `weight_sharing` picks which weight-memory
    figure constrains the core count (see the module docstring for the model and its sources).
    """
    limits = _check_report_args(graph, graded_bits, limits)
    w = _Wiring.of(graph, graded_bits)
    shapes, syn_per_edge, stored = _shapes(graph, w)
    res = {k: NodeResources(k, w.kinds[k], shapes[k]) for k in graph.nodes}
    for k, r in res.items():
        _node_costs(r, w, shapes, syn_per_edge[k], stored[k], limits.weight_bits)
    # neuro-cores per population: the neuron node plus the carrier-less synaptic nodes feeding it
    for k, r in res.items():
        if r.neurons == 0:
            if w.kinds[k] in _SYNAPTIC_KINDS:
                r.hosted_by = w.succ[k][0]
            continue
        members = [r] + [res[p] for p in w.preds[k] if w.kinds[p] in _SYNAPTIC_KINDS and not w.has_carrier(p)]
        mem = sum(m.weight_bits_shared if weight_sharing else m.weight_bits_per_connection for m in members)
        r.cores = max(1, math.ceil(r.neurons / limits.neurons_per_core),
                      math.ceil(mem / limits.synaptic_bits_per_core))

    steps = graph.metadata.get("timesteps_per_segment") if isinstance(graph.metadata, Mapping) else None
    try:
        steps = int(steps) if steps is not None else None
    except (TypeError, ValueError):
        steps = None
    order = list(graph.nodes)
    return ResourceReport([res[k] for k in order], int(graded_bits), bool(weight_sharing), limits, steps)


def _check_report_args(graph: nir.NIRGraph, graded_bits: int, limits: Loihi2Limits | None) -> Loihi2Limits:
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"graph must be a nir.NIRGraph, got {type(graph).__name__}")
    if isinstance(graded_bits, bool) or not isinstance(graded_bits, (int, np.integer)):
        raise TypeError(f"graded_bits must be an int, got {type(graded_bits).__name__}")
    if not 1 <= graded_bits <= MAX_GRADED_BITS:
        raise ValueError(f"graded_bits must be in [1, {MAX_GRADED_BITS}] (Loihi 2 payload), "
                         f"got {graded_bits}")
    limits = Loihi2Limits() if limits is None else limits
    if not isinstance(limits, Loihi2Limits):
        raise TypeError(f"limits must be a Loihi2Limits, got {type(limits).__name__}")
    if not graph.nodes:
        raise ValueError("graph has no nodes")
    for src, dst in graph.edges:
        for end in (src, dst):
            if end not in graph.nodes:
                raise ValueError(f"edge ({src!r}, {dst!r}) names unknown node {end!r}")
    return limits


@dataclass
class _Wiring:
    """Each node's kind, sources and consumers, and what width of message it sends."""

    kinds: dict[str, str]
    preds: dict[str, list[str]]
    succ: dict[str, list[str]]
    graded_bits: int

    @classmethod
    def of(cls, graph: nir.NIRGraph, graded_bits: int) -> _Wiring:
        kinds = {k: _kind(k, v) for k, v in graph.nodes.items()}
        preds: dict[str, list[str]] = {k: [] for k in graph.nodes}
        succ: dict[str, list[str]] = {k: [] for k in graph.nodes}
        for src, dst in graph.edges:
            if kinds[dst] == "input":
                raise ValueError(f"edge ({src!r}, {dst!r}) points into Input port {dst!r}")
            if kinds[src] == "output":
                raise ValueError(f"edge ({src!r}, {dst!r}) leaves Output port {src!r}")
            preds[dst].append(src)
            succ[src].append(dst)
        return cls(kinds, preds, succ, graded_bits)

    def has_carrier(self, k: str) -> bool:
        """A synaptic node needs carrier neurons unless its output lands in exactly one neuron node."""
        succ = self.succ[k]
        into_one_neuron_node = len(succ) == 1 and self.kinds[succ[0]] in _NEURON_KINDS
        return self.kinds[k] in _SYNAPTIC_KINDS and not into_one_neuron_node

    def out_bits(self, k: str) -> int:
        """Message width a node (or the port/carrier behind it) sends."""
        if self.kinds[k] == "lif":
            return 1
        if self.kinds[k] in ("junction", "input") or self.has_carrier(k):
            return self.graded_bits
        return 0


def _shapes(graph: nir.NIRGraph, w: _Wiring):
    """Per node, in topological order: output shape, synapses per incoming edge, weights stored."""
    shapes: dict[str, tuple[int, ...]] = {}
    syn_per_edge: dict[str, int] = {}
    stored: dict[str, int] = {}
    for k in _topological(graph):
        if w.kinds[k] != "input":
            if not w.preds[k]:
                raise ValueError(f"node {k!r} has no incoming edge")
            in_shapes = {shapes[p] for p in w.preds[k]}
            if len(in_shapes) != 1:
                raise ValueError(f"node {k!r}: incoming edges disagree on shape "
                                 f"{ {p: shapes[p] for p in w.preds[k]} }")
            in_shape = in_shapes.pop()
        else:
            in_shape = None
        shapes[k], syn_per_edge[k], stored[k] = _node_shape(k, w.kinds[k], graph.nodes[k], in_shape)
    return shapes, syn_per_edge, stored


def _node_costs(r: NodeResources, w: _Wiring, shapes, syn_per_edge: int, stored: int, wb: int) -> None:
    """Neurons, synapses, stored weights, message widths and host bytes of one node."""
    k, kind = r.name, r.kind
    n = int(np.prod(shapes[k]))
    if kind == "lif":
        r.lif_neurons = n
    elif kind == "junction" or w.has_carrier(k):
        r.graded_neurons = n
    r.out_msg_bits = w.out_bits(k)
    if kind in _SYNAPTIC_KINDS:
        r.synapses = syn_per_edge * len(w.preds[k])
        r.stored_weights = stored
        r.in_msg_bits = max(w.out_bits(p) for p in w.preds[k])
    elif kind in _NEURON_KINDS:
        # one-to-one connections from neurons / ports / carriers (a carrier-less synaptic
        # predecessor's own synapses already terminate here)
        direct = [p for p in w.preds[k] if w.out_bits(p) > 0]
        r.synapses = n * len(direct)
        r.stored_weights = shapes[k][0] * len(direct)  # one depthwise weight per channel
        r.in_msg_bits = max((w.out_bits(p) for p in direct), default=0)
    elif kind == "input":
        r.host_in_bytes = math.ceil(n * w.graded_bits / 8)
    elif kind == "output":
        r.in_msg_bits = w.out_bits(w.preds[k][0])
        r.host_out_bytes = math.ceil(n * r.in_msg_bits / 8)
    r.weight_bits_shared = r.stored_weights * wb
    r.weight_bits_per_connection = r.synapses * wb
