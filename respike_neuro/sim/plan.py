"""NIR graph -> a flat, delay-matched plan of Lava units (numpy + nir only: no Lava, no torch).

Timing model (Loihi-faithful, as Lava executes it): a synaptic unit (conv, pooling) outputs at step n what
it received at step n-1; neurons (LIF, graded relays, host ports) add no delay. With L(u) the step at
which unit u emits logical timestep 0,
    L(input) = 0, or L(paired output) for a host-fed input (stage{k}_in <- stage{k-1}_out),
    a(u)     = max over predecessors p of L(p)          (arrival step),
    L(u)     = a(u) + 1 for synapses, a(u) otherwise,
and every edge with L(p) < a(u) gets a delay line of a(u) - L(p) steps, so all summed inputs of a node
belong to the same logical timestep. Output port k then carries logical step t at Lava step t + L(k).

Biases of BN-folded convs are carried by the neuron that receives the conv (LIF bias, relay bias) when
all of the conv's consumers are neurons, and otherwise by a graded relay inserted right after the conv.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from respike_neuro.graph import stage_port, topological_order

SUPPORTED_TYPES = ("Input", "Output", "Conv2d", "AvgPool2d", "SumPool2d", "LIF", "Scale")
SYNAPTIC_KINDS = ("conv",)
NEURON_KINDS = ("lif", "relay")


class PlanError(ValueError):
    """A NIR graph that cannot be mapped onto Lava (message names the node and the problem)."""


@dataclass
class Unit:
    """One Lava process to be (a NIR node, or a relay/delay the planner inserted)."""

    key: str
    kind: str  # input | conv | lif | relay | delay | output
    shape: tuple[int, int, int]  # (C, H, W) of the unit's output stream
    preds: list[str] = field(default_factory=list)
    nir_key: str | None = None
    nir_type: str | None = None
    # conv / pooling (PyTorch layout, correlation)
    weight: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)  # (H, W)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    in_shape: tuple[int, int, int] | None = None
    is_pool: bool = False
    binary_input: bool = False
    # neurons
    beta: float = 0.0
    theta: float = 0.0
    bias: np.ndarray | None = None  # (C, H, W)
    scale: np.ndarray | None = None  # relay
    delay: int = 0
    latency: int = 0

    @property
    def lava_shape(self) -> tuple[int, int, int]:
        c, h, w = self.shape
        return (w, h, c)


@dataclass
class Plan:
    units: dict[str, Unit]  # topological order
    inputs: list[str]  # Input port names (= unit keys)
    outputs: list[str]  # Output port names
    feeds: dict[str, str]  # host-fed input port -> output port it is computed from
    metadata: dict
    dt: float | None

    def port_latency(self, port: str) -> int:
        return self.units[port].latency

    @property
    def max_latency(self) -> int:
        return max((self.units[o].latency for o in self.outputs), default=0)

    @property
    def lif_keys(self) -> list[str]:
        return [k for k, u in self.units.items() if u.kind == "lif"]

    def succs(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {k: [] for k in self.units}
        for k, u in self.units.items():
            for p in u.preds:
                out[p].append(k)
        return out


def load_graph(graph):
    """A nir.NIRGraph from a graph object or an HDF5 path (clear errors for anything else)."""
    import nir

    if isinstance(graph, nir.NIRGraph):
        return graph
    if isinstance(graph, (str, Path)):
        path = Path(graph)
        if not path.is_file():
            raise PlanError(f"NIR file {str(path)!r} does not exist")
        try:
            g = nir.read(str(path))
        except Exception as exc:  # h5py/nir raise many types for foreign files
            raise PlanError(
                f"{str(path)!r} is not a readable NIR file ({type(exc).__name__}: {exc})"
            ) from None
        if not isinstance(g, nir.NIRGraph):
            raise PlanError(f"{str(path)!r} holds a single {type(g).__name__}, not a NIR graph")
        return g
    raise TypeError(f"graph must be a nir.NIRGraph or a path, got {type(graph).__name__}")


def meta_value(meta: dict, key: str) -> Any:
    """A metadata value as a plain Python scalar/str (HDF5 hands back bytes and 0-d arrays)."""
    v = meta.get(key)
    if isinstance(v, np.ndarray):
        v = v.reshape(-1)[0] if v.size == 1 else v.tolist()
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bytes):
        v = v.decode()
    return v


def _scalar(v) -> float | None:
    if v is None:
        return None
    a = np.asarray(v)
    if a.dtype.kind in "SUO":
        try:
            return float(a.item().decode() if isinstance(a.item(), bytes) else a.item())
        except (TypeError, ValueError):
            return None
    return float(a.reshape(-1)[0]) if a.size else None


def _pair(v, what: str, key: str) -> tuple[int, int]:
    a = np.asarray(v).reshape(-1)
    if a.size == 1:
        return int(a[0]), int(a[0])
    if a.size == 2:
        return int(a[0]), int(a[1])
    raise PlanError(f"node {key!r}: {what} must be an int or a pair, got {v!r}")


def _port_shape(type_dict, key: str, what: str) -> tuple[int, ...] | None:
    if not type_dict:
        return None
    vals = list(type_dict.values())
    if len(vals) != 1:
        raise PlanError(f"node {key!r}: expected one {what} entry, got {list(type_dict)}")
    if vals[0] is None:
        return None
    return tuple(int(s) for s in np.asarray(vals[0]).reshape(-1))


def _uniform(arr, key: str, what: str) -> float:
    a = np.asarray(arr, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise PlanError(f"node {key!r}: {what} is empty")
    if not np.allclose(a, a[0], rtol=1e-9, atol=1e-12):
        raise PlanError(f"node {key!r}: {what} varies across neurons; Lava's LIF takes one value per layer")
    return float(a[0])


def _default_feeds(inputs: list[str], outputs: list[str]) -> dict[str, str]:
    feeds = {}
    for name in inputs:
        sp = stage_port(name)
        if sp and sp[1] == "in" and f"stage{sp[0] - 1}_out" in outputs:
            feeds[name] = f"stage{sp[0] - 1}_out"
    return feeds


def _toposort(nodes, preds: dict[str, list[str]]) -> list[str]:
    try:
        return topological_order(list(nodes), [(p, k) for k in nodes for p in dict.fromkeys(preds[k])])
    except ValueError as err:
        raise PlanError(str(err)) from None


def build_plan(graph, *, dt: float | None = None, feeds: dict[str, str] | None = None) -> Plan:
    """Validate a ReSpike NIR graph and turn it into a delay-matched plan of Lava units."""
    g = load_graph(graph)
    meta = dict(getattr(g, "metadata", {}) or {})
    dt = dt if dt is not None else _scalar(meta.get("dt"))
    nodes = dict(g.nodes)
    preds = _sources(nodes, g.edges)
    inputs = [k for k, n in nodes.items() if type(n).__name__ == "Input"]
    outputs = [k for k, n in nodes.items() if type(n).__name__ == "Output"]
    if not inputs or not outputs:
        raise PlanError("graph needs at least one Input and one Output node")
    for k in inputs:
        if preds[k]:
            raise PlanError(f"Input node {k!r} has incoming edges from {preds[k]}")
    feeds = _default_feeds(inputs, outputs) if feeds is None else dict(feeds)
    for i, o in feeds.items():
        if i not in inputs or o not in outputs:
            raise PlanError(f"feed {i!r} <- {o!r}: need an Input and an Output port of the graph")
    virtual = {k: list(v) for k, v in preds.items()}
    for i, o in feeds.items():
        virtual[i].append(o)
    order = _toposort(nodes, virtual)

    beta_meta, theta_meta = _scalar(meta.get("beta")), _scalar(meta.get("theta"))
    units: dict[str, Unit] = {}
    for key in order:
        units[key] = _unit(key, nodes[key], preds[key], units, dt, beta_meta, theta_meta)
    for key in inputs:
        reach = _reachable(units, key)
        if not any(o in reach for o in outputs):
            raise PlanError(f"Input node {key!r} reaches no Output node")
    for u in units.values():
        if u.kind == "conv":
            u.binary_input = all(units[p].kind == "lif" for p in u.preds)
    units = _absorb_biases(units)
    units = _match_delays(units, feeds)
    return Plan(units, inputs, outputs, feeds, meta, dt)


def _sources(nodes: dict[str, Any], edges) -> dict[str, list[str]]:
    """Each node's sources, after checking every node type is supported and every edge is sound."""
    for key, node in nodes.items():
        tname = type(node).__name__
        if tname not in SUPPORTED_TYPES:
            raise PlanError(
                f"node {key!r} has unsupported NIR type {tname} (supported: {', '.join(SUPPORTED_TYPES)})"
            )
    preds: dict[str, list[str]] = {k: [] for k in nodes}
    for src, dst in edges:
        for end in (src, dst):
            if end not in nodes:
                raise PlanError(f"edge ({src!r} -> {dst!r}) names unknown node {end!r}")
        if src in preds[dst]:
            raise PlanError(f"duplicate edge {src!r} -> {dst!r}")
        preds[dst].append(src)
    return preds


def _unit(key: str, node: Any, ps: list[str], units: dict[str, Unit], dt, beta_meta, theta_meta) -> Unit:
    """The unit of one node, its sources' units already built (`units`)."""
    tname = type(node).__name__
    if tname == "Input":
        shape = _port_shape(node.input_type, key, "input_type")
        if shape is None or len(shape) != 3:
            raise PlanError(f"Input node {key!r} must have a (C, H, W) shape, got {shape}")
        return Unit(key, "input", shape, [], key, tname)
    if not ps:
        raise PlanError(f"node {key!r} ({tname}) has no incoming edge")
    in_shapes = {units[p].shape for p in ps}
    if len(in_shapes) != 1:
        raise PlanError(f"node {key!r} sums inputs of different shapes {sorted(in_shapes)} from {ps}")
    in_shape = in_shapes.pop()
    u = Unit(key, "", in_shape, list(ps), key, tname)
    if tname in ("Conv2d", "AvgPool2d", "SumPool2d"):
        _fill_conv(u, node, in_shape)
    elif tname == "LIF":
        _fill_lif(u, node, in_shape, dt, beta_meta, theta_meta)
    elif tname == "Scale":
        u.kind = "relay"
        try:
            u.scale = np.broadcast_to(np.asarray(node.scale, dtype=np.float64), in_shape).copy()
        except ValueError:
            raise PlanError(
                f"node {key!r}: scale of shape {np.shape(node.scale)} does not fit {in_shape}"
            ) from None
        u.bias = np.zeros(in_shape)
    elif tname == "Output":
        u.kind = "output"
        want = _port_shape(node.output_type, key, "output_type")
        if want is not None and tuple(want) != tuple(in_shape):
            raise PlanError(f"Output node {key!r} declares shape {want} but receives {in_shape}")
    return u


def _reachable(units: dict[str, Unit], start: str) -> set[str]:
    succ: dict[str, list[str]] = {k: [] for k in units}
    for k, u in units.items():
        for p in u.preds:
            succ[p].append(k)
    seen, todo = {start}, [start]
    while todo:
        for s in succ[todo.pop()]:
            if s not in seen:
                seen.add(s)
                todo.append(s)
    return seen


def _fill_conv(u: Unit, node, in_shape) -> None:
    c, h, w = in_shape
    key = u.key
    u.kind = "conv"
    u.in_shape = in_shape
    if u.nir_type == "Conv2d":
        wt = np.asarray(node.weight, dtype=np.float64)
        if wt.ndim != 4:
            raise PlanError(
                f"node {key!r}: Conv2d weight must be 4-D (C_out, C_in/groups, kH, kW), got {wt.shape}"
            )
        groups = int(node.groups)
        if wt.shape[1] * groups != c:
            raise PlanError(
                f"node {key!r}: weight {wt.shape} with groups={groups} expects {wt.shape[1] * groups} "
                f"input channels, the input has {c}"
            )
        stride = _pair(node.stride, "stride", key)
        dilation = _pair(node.dilation, "dilation", key)
        if isinstance(node.padding, str):
            if node.padding == "valid":
                padding = (0, 0)
            elif node.padding == "same" and stride == (1, 1) and all(k % 2 for k in wt.shape[2:]):
                padding = tuple(d * (k - 1) // 2 for d, k in zip(dilation, wt.shape[2:]))
            else:
                raise PlanError(
                    f"node {key!r}: padding {node.padding!r} is not supported with stride {stride}"
                )
        else:
            padding = _pair(node.padding, "padding", key)
        bias = (
            np.asarray(node.bias, dtype=np.float64).reshape(-1)
            if node.bias is not None
            else np.zeros(wt.shape[0])
        )
        if bias.size == 1 and wt.shape[0] > 1:
            bias = np.full(wt.shape[0], bias[0])
        if bias.size != wt.shape[0]:
            raise PlanError(f"node {key!r}: bias has {bias.size} entries for {wt.shape[0]} output channels")
        u.weight, u.groups = wt, groups
        u.bias = np.broadcast_to(bias[:, None, None], (wt.shape[0], 1, 1)).copy()
    else:
        k = _pair(node.kernel_size, "kernel_size", key)
        stride = _pair(node.stride, "stride", key)
        padding = _pair(node.padding, "padding", key)
        dilation = (1, 1)
        scale = 1.0 / (k[0] * k[1]) if u.nir_type == "AvgPool2d" else 1.0
        u.weight = np.full((c, 1, k[0], k[1]), scale)
        u.groups = c
        u.is_pool = True
        u.bias = np.zeros((c, 1, 1))
    kh, kw = u.weight.shape[2:]
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if oh < 1 or ow < 1:
        raise PlanError(f"node {key!r}: kernel {(kh, kw)} leaves no output for input {in_shape}")
    u.stride, u.padding, u.dilation = stride, padding, dilation
    u.shape = (u.weight.shape[0], oh, ow)


def _fill_lif(u: Unit, node, in_shape, dt, beta_meta, theta_meta) -> None:
    key = u.key
    if dt is None:
        raise PlanError(
            f"LIF node {key!r}: graph metadata has no 'dt' (needed to turn tau into a decay); pass dt="
        )
    for name in ("tau", "r", "v_leak", "v_threshold"):
        arr = np.asarray(getattr(node, name))
        if arr.size not in (1, int(np.prod(in_shape))) and arr.shape != in_shape:
            raise PlanError(f"LIF node {key!r}: {name} has shape {arr.shape}, its input is {in_shape}")
    tau = _uniform(node.tau, key, "tau")
    r = _uniform(node.r, key, "r")
    if tau <= 0:
        raise PlanError(f"LIF node {key!r}: tau must be positive, got {tau}")
    if not np.allclose(np.asarray(node.v_leak, dtype=float), 0.0, atol=1e-12):
        raise PlanError(f"LIF node {key!r}: v_leak must be 0 (v <- beta*v + I semantics)")
    if node.v_reset is not None and not np.allclose(np.asarray(node.v_reset, dtype=float), 0.0, atol=1e-12):
        raise PlanError(f"LIF node {key!r}: v_reset must be 0 (hard reset to zero)")
    k = dt / tau
    beta, gain = 1.0 - k, k * r
    if not 0.0 <= beta <= 1.0 or gain <= 0:
        raise PlanError(
            f"LIF node {key!r}: dt/tau = {k} gives decay {beta} and input gain {gain}; "
            "need 0 <= beta <= 1 and gain > 0"
        )
    if beta_meta is not None and abs(beta_meta - beta) < 1e-9:
        beta = beta_meta  # the exact value the model used, free of tau round-off
    if abs(gain - 1.0) < 1e-9:
        gain = 1.0
    theta = _uniform(node.v_threshold, key, "v_threshold")
    if theta_meta is not None and abs(theta_meta - theta) < 1e-9 * max(1.0, abs(theta)):
        theta = theta_meta
    # v <- beta v + gain I, reset to 0, is the same neuron as v' = v/gain with threshold theta/gain
    u.kind, u.beta, u.theta = "lif", beta, theta / gain
    u.bias = np.zeros(in_shape)


def _absorb_biases(units: dict[str, Unit]) -> dict[str, Unit]:
    succ: dict[str, list[str]] = {k: [] for k in units}
    for k, u in units.items():
        for p in u.preds:
            succ[p].append(k)
    out: dict[str, Unit] = {}
    renamed: dict[str, str] = {}
    for key, u in units.items():  # topological: every consumer comes after the conv it renames
        u.preds = [renamed.get(p, p) for p in u.preds]
        out[key] = u
        if u.kind != "conv" or not np.any(u.bias):
            continue
        consumers = [units[s] for s in succ[key]]
        if consumers and all(c.kind in NEURON_KINDS for c in consumers):
            for c in consumers:
                c.bias = c.bias + np.broadcast_to(u.bias, c.shape)
        else:
            relay = Unit(
                f"{key}#bias",
                "relay",
                u.shape,
                [key],
                None,
                None,
                bias=np.broadcast_to(u.bias, u.shape).copy(),
                scale=np.ones(u.shape),
            )
            out[relay.key] = relay
            renamed[key] = relay.key
        u.bias = np.zeros_like(u.bias)
    for key, u in list(out.items()):
        if u.kind == "output" and len(u.preds) > 1:
            relay = Unit(
                f"{key}#sum",
                "relay",
                u.shape,
                u.preds,
                None,
                None,
                bias=np.zeros(u.shape),
                scale=np.ones(u.shape),
            )
            u.preds = [relay.key]
            out = _insert_before(out, key, relay)
    return out


def _insert_before(units: dict[str, Unit], key: str, new: Unit) -> dict[str, Unit]:
    out = {}
    for k, u in units.items():
        if k == key:
            out[new.key] = new
        out[k] = u
    return out


def _match_delays(units: dict[str, Unit], feeds: dict[str, str]) -> dict[str, Unit]:
    out: dict[str, Unit] = {}
    for key, u in units.items():
        if u.kind == "input":
            src = feeds.get(key)
            u.latency = out[src].latency if src is not None else 0
            out[key] = u
            continue
        arrival = max(out[p].latency for p in u.preds)
        new_preds = []
        for p in u.preds:
            d = arrival - out[p].latency
            if d == 0:
                new_preds.append(p)
                continue
            dkey = f"{p}#delay{d}"
            if dkey not in out:
                pu = out[p]
                out[dkey] = Unit(dkey, "delay", pu.shape, [p], None, None, delay=d, latency=arrival)
            new_preds.append(dkey)
        u.preds = new_preds
        u.latency = arrival + (1 if u.kind in SYNAPTIC_KINDS else 0)
        out[key] = u
    return out
