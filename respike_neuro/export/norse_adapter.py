"""Run our NIR graphs in Norse (`norse.torch.from_nir`, norse 1.1 on nirtorch 2.x) with its quirks handled.

Norse is the independent third-party consumer of rung 3. Read from their sources (norse 1.1.0,
nirtorch 2.6), `from_nir` builds nirtorch's (deprecated) `GraphExecutor`; as is, that would run
our graphs wrongly or not at all. Each quirk and what this adapter does about it:

1. LIF `r` is ignored (a warning only) and `v_reset` is never read (Norse resets to its default
   0): r is folded into what feeds the LIF - into the weights and bias of a conv that feeds only
   this neuron, else into a new 1x1 diagonal conv `<lif>.r` inserted before it - and r is set to
   1; a v_reset != 0 is refused. Norse also starts v at v_leak, so v_leak != 0 is refused.
2. Norse maps neither Scale nor AvgPool2d: the node is dropped (elem None) and its consumers
   then fail with "No inputs found". A Scale becomes a 1x1 conv with the scale on the diagonal
   (for our junctions: the identity, exact in float since x*1 + 0*y == x); an AvgPool2d k becomes
   SumPool2d k (torch LPPool2d p=1 = avg_pool2d * k*k) and 1/(k*k) is folded into the weights of
   the convs it feeds (only convs may consume it). With k*k a power of two both factors are
   exact, so conv(sum, w/4) == conv(avg, w) bit for bit.
3. Execution order is a depth-first pre-order from the first Input, not a topological order: a
   junction fed by a main path and a pooled shortcut runs before the shortcut, and then sums the
   shortcut's value from the PREVIOUS timestep (or nothing at t = 0) - silently wrong. The
   executor's `execution_order` is replaced by a topological order of the same nodes.
4. Only the first Input node receives data, and the returned value is the last node's output
   (one Output). A graph with host ports is therefore split into one sub-graph per Output node
   (its ancestors, which must contain exactly one Input), i.e. one per stage; they are run one
   after the other with the host's values fed to each stage's Input.
5. Parameters are cast to float32 (`tensor.float()`), also the LIF's 1/tau and threshold, so
   `.double()` alone would leave float32-rounded weights and float32 neurons. The conv weights
   are reloaded and the LIF parameters rebuilt from the NIR values in the requested dtype.
6. Time and batch: the executor is a cell - one call per timestep with a (B, C, H, W) tensor and
   the state it returned last time (None at the start of a segment resets every neuron). Node
   outputs of the step are in `state.cache` under sanitised names ('.' -> '_').

Norse's LIF step is  v <- v + dt/tau * (v_leak - v + I) ; z = [v - v_th > 0] ; v <- (1-z) v + z*0,
which with r folded is our neuron up to float rounding of dt/tau and r.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import nir
import numpy as np
import torch

__all__ = ["NorseResult", "NorseStage", "prepare_for_norse", "run_norse", "split_by_output"]

_NORSE_TYPES = (nir.Input, nir.Output, nir.Conv2d, nir.LIF, nir.SumPool2d)


@dataclass
class NorseResult:
    """outputs: Output key -> (T, *shape); records: original node key -> (T, *shape) per timestep."""

    outputs: dict[str, np.ndarray]
    records: dict[str, np.ndarray]


@dataclass
class NorseStage:
    """One single-Input, single-Output part of the graph, rewritten and loaded into Norse."""

    input_key: str
    output_key: str
    graph: nir.NIRGraph  # the rewritten sub-graph handed to Norse
    module: torch.nn.Module  # norse.torch.from_nir(graph)
    names: dict[str, str]  # sanitised Norse name -> node key of the rewritten graph


def _copy_node(node: nir.NIRNode) -> nir.NIRNode:
    return type(node).from_dict(node.to_dict())


def split_by_output(graph: nir.NIRGraph) -> list[tuple[str, str, nir.NIRGraph]]:
    """One (input key, output key, sub-graph) per Output node: its ancestors, with exactly one Input."""
    preds: dict[str, list[str]] = {k: [] for k in graph.nodes}
    for src, dst in graph.edges:
        preds[dst].append(src)
    parts = []
    for out_key, node in graph.nodes.items():
        if not isinstance(node, nir.Output):
            continue
        keep, todo = set(), [out_key]
        while todo:
            k = todo.pop()
            if k not in keep:
                keep.add(k)
                todo += preds[k]
        ins = [k for k in keep if isinstance(graph.nodes[k], nir.Input)]
        if len(ins) != 1:
            raise ValueError(
                f"Output {out_key!r} depends on {len(ins)} Input nodes {sorted(ins)}; "
                "Norse's executor feeds exactly one"
            )
        nodes = {k: _copy_node(n) for k, n in graph.nodes.items() if k in keep}
        edges = [(a, b) for a, b in graph.edges if a in keep and b in keep]
        parts.append((ins[0], out_key, nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)))
    if not parts:
        raise ValueError("the graph has no Output node")
    return parts


def _per_channel(values: np.ndarray, key: str, name: str, channels: int) -> np.ndarray:
    """A (C, H, W) (or broadcastable) neuron parameter that must be constant per channel -> (C,)."""
    arr = np.broadcast_to(
        np.asarray(values, dtype=np.float64), (channels, 1, 1) if np.ndim(values) < 3 else np.shape(values)
    )
    flat = arr.reshape(channels, -1)
    if not np.all(flat == flat[:, :1]):
        raise ValueError(f"node {key!r}: {name} varies within a channel; it cannot be folded into a conv")
    return flat[:, 0]


def _rewrite(graph: nir.NIRGraph) -> nir.NIRGraph:
    """The same function with only node types Norse maps, r folded and r == 1 (quirks 1 and 2)."""
    rw = _Rewrite({k: _copy_node(n) for k, n in graph.nodes.items()}, list(graph.edges))
    for key, node in rw.nodes.items():
        if not isinstance(node, (*_NORSE_TYPES, nir.Scale, nir.AvgPool2d)):
            raise ValueError(f"node {key!r} ({type(node).__name__}) is not supported by the Norse adapter")
    for key in list(rw.nodes):
        node = rw.nodes[key]
        if isinstance(node, nir.Scale):
            c = rw.channels_of(rw.producers(key)[0])
            rw.nodes[key] = _diag_conv(_per_channel(node.scale, key, "scale", c))
        elif isinstance(node, nir.AvgPool2d):
            rw.avg_to_sum_pool(key, node)
    for key in list(rw.nodes):
        node = rw.nodes[key]
        if isinstance(node, nir.LIF):
            rw.fold_r(key, node)
    out = nir.NIRGraph(nodes=rw.nodes, edges=rw.edges, type_check=False)  # Norse reads no types
    return out


def _diag_conv(scale: np.ndarray) -> nir.Conv2d:
    """A 1x1 conv that multiplies channel c by scale[c]."""
    c = scale.shape[0]
    w = np.zeros((c, c, 1, 1), dtype=np.float64)
    w[np.arange(c), np.arange(c), 0, 0] = scale
    return nir.Conv2d(
        input_shape=None,
        weight=w,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        bias=np.zeros(c, np.float64),
    )


@dataclass
class _Rewrite:
    """A graph being rewritten for Norse: its nodes and edges, changed in place."""

    nodes: dict[str, nir.NIRNode]
    edges: list[tuple[str, str]]

    def consumers(self, key: str) -> list[str]:
        return [b for a, b in self.edges if a == key]

    def producers(self, key: str) -> list[str]:
        return [a for a, b in self.edges if b == key]

    def channels_of(self, key: str) -> int:
        n = self.nodes[key]
        if isinstance(n, nir.Conv2d):
            return int(n.weight.shape[0])
        return (
            self.channels_of(self.producers(key)[0])
            if not isinstance(n, nir.Input)
            else int(n.input_type["input"][0])
        )

    def avg_to_sum_pool(self, key: str, node: nir.AvgPool2d) -> None:
        """AvgPool2d -> SumPool2d, its 1/(kH*kW) folded into the convs it feeds."""
        k = np.broadcast_to(np.asarray(node.kernel_size), (2,))
        if np.any(np.asarray(node.padding) != 0):
            raise ValueError(f"node {key!r}: AvgPool2d with padding (Norse's SumPool2d ignores padding)")
        outs = self.consumers(key)
        if not outs or not all(isinstance(self.nodes[o], nir.Conv2d) for o in outs):
            raise ValueError(f"node {key!r}: AvgPool2d must feed only convs to be rewritten for Norse")
        for o in outs:
            if len(self.producers(o)) != 1:
                raise ValueError(f"node {o!r}: a conv fed by AvgPool2d {key!r} has other inputs too")
            conv = self.nodes[o]
            conv.weight = np.asarray(conv.weight, np.float64) / float(k[0] * k[1])
        stride = node.stride if node.stride is not None else node.kernel_size
        self.nodes[key] = nir.SumPool2d(
            kernel_size=np.array(k),
            stride=np.broadcast_to(np.asarray(stride), (2,)).copy(),
            padding=np.array([0, 0]),
        )

    def fold_r(self, key: str, node: nir.LIF) -> None:
        """r into the conv feeding the LIF (or a diagonal 1x1 conv in front of it), then r = 1."""
        v_reset = 0.0 if node.v_reset is None else node.v_reset
        if np.any(np.asarray(v_reset) != 0):
            raise ValueError(f"node {key!r}: v_reset != 0, which Norse's from_nir ignores (it resets to 0)")
        if np.any(np.asarray(node.v_leak) != 0):
            raise ValueError(f"node {key!r}: v_leak != 0; Norse starts v at v_leak, our segments at 0")
        r = np.asarray(node.r, dtype=np.float64)
        if np.all(r == 1.0):
            return
        srcs = self.producers(key)
        c = self.channels_of(srcs[0])
        r_c = _per_channel(r, key, "r", c)
        for src in srcs:
            if isinstance(self.nodes[src], nir.Conv2d) and self.consumers(src) == [key]:
                conv = self.nodes[src]
                conv.weight = np.asarray(conv.weight, np.float64) * r_c[:, None, None, None]
                conv.bias = np.asarray(conv.bias, np.float64) * r_c
            else:
                gain = f"{key}.r" if len(srcs) == 1 else f"{key}.r.{src}"
                self.nodes[gain] = _diag_conv(r_c)
                self.edges = [(a, gain if (a, b) == (src, key) else b) for a, b in self.edges] + [(gain, key)]
        node.r = np.ones_like(r)


def _topological(executor: torch.nn.Module, first: str, order_hint: list[str]) -> list:
    """Kahn's order of the executor's nodes (quirk 3), starting with the Input `first`."""
    node_list = list(executor.graph.node_list)
    rank = {n: order_hint.index(n.name) if n.name in order_hint else len(order_hint) for n in node_list}
    indeg = {n: 0 for n in node_list}
    for n in node_list:
        for m in n.outgoing_nodes:
            indeg[m] += 1
    ready = sorted((n for n in node_list if indeg[n] == 0), key=lambda n: (n.name != first, rank[n]))
    order = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in n.outgoing_nodes:
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
        ready.sort(key=lambda n: rank[n])
    if len(order) != len(node_list) or order[0].name != first:
        raise ValueError("Norse executor graph is cyclic or does not start at its Input node")
    return order


def _exact_parameters(
    module: torch.nn.Module, graph: nir.NIRGraph, names: dict[str, str], dtype: torch.dtype
) -> None:
    """Reload conv weights and rebuild LIF parameters in `dtype` from the NIR values (quirk 5)."""
    from norse.torch.module.lif_box import LIFBoxCell

    for name, sub in module.named_children():
        if isinstance(sub, torch.nn.Conv2d):
            node = graph.nodes[names[name]]
            with torch.no_grad():
                sub.weight.copy_(torch.as_tensor(np.asarray(node.weight, np.float64), dtype=dtype))
                sub.bias.copy_(torch.as_tensor(np.asarray(node.bias, np.float64), dtype=dtype))
        elif isinstance(sub, LIFBoxCell):
            node = graph.nodes[names[name]]
            as_t = lambda a: torch.as_tensor(np.asarray(a, np.float64), dtype=dtype)  # noqa: E731
            sub.p = sub.p._replace(
                tau_mem_inv=1.0 / as_t(node.tau),
                v_leak=as_t(node.v_leak),
                v_th=as_t(node.v_threshold),
                v_reset=torch.zeros((), dtype=dtype),
            )


def prepare_for_norse(
    graph: nir.NIRGraph, *, dt: float | None = None, dtype: torch.dtype = torch.float64
) -> list[NorseStage]:
    """Split, rewrite and load `graph` into Norse executors, one per Output (see module docstring)."""
    import norse.torch
    from nirtorch.utils import sanitize_name

    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"graph must be a nir.NIRGraph, got {type(graph).__name__}")
    dt = float(dt if dt is not None else np.asarray(graph.metadata.get("dt", np.nan)))
    if not np.isfinite(dt) or dt <= 0:
        raise ValueError("dt is needed: pass dt=... or store graph.metadata['dt']")
    stages = []
    for in_key, out_key, part in split_by_output(graph):
        rewritten = _rewrite(part)
        names = {sanitize_name(k): k for k in rewritten.nodes}
        if len(names) != len(rewritten.nodes):
            raise ValueError("node keys collide after Norse's name sanitising ('.' -> '_')")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # nirtorch.load is deprecated
            module = norse.torch.from_nir(rewritten, dt=dt)  # r == 1 now: Norse has nothing to warn about
        module.execution_order = _topological(module, sanitize_name(in_key), list(names))
        module = module.to(dtype)
        _exact_parameters(module, rewritten, names, dtype)
        stages.append(NorseStage(in_key, out_key, rewritten, module.eval(), names))
    return stages


def run_norse(
    graph: nir.NIRGraph,
    inputs: Mapping[str, np.ndarray],
    *,
    dt: float | None = None,
    dtype: torch.dtype = torch.float64,
    stages: list[NorseStage] | None = None,
) -> NorseResult:
    """Run one segment in Norse. inputs: Input key -> (T, *shape); all state starts at zero.

    Each stage runs its whole sequence with the given values on its Input port (the host's
    values for stage{k}_in), so stage k's result does not depend on stage k-1's through Norse.
    Records hold every node of the original graph that exists after rewriting (renamed Scale and
    AvgPool2d nodes keep their key: a Scale's record is its value, an AvgPool2d's is the window SUM).
    """
    stages = stages if stages is not None else prepare_for_norse(graph, dt=dt, dtype=dtype)
    missing = sorted({s.input_key for s in stages} - set(inputs))
    if missing:
        raise ValueError(f"no input given for Input node(s) {missing}")
    outputs: dict[str, np.ndarray] = {}
    records: dict[str, list[np.ndarray]] = {}
    for st in stages:
        x = np.asarray(inputs[st.input_key])
        state = None
        per_step: dict[str, list[np.ndarray]] = {}
        with torch.no_grad():
            for t in range(x.shape[0]):
                _, state = st.module(torch.as_tensor(x[t][None], dtype=dtype), state)
                for name, value in state.cache.items():
                    per_step.setdefault(st.names.get(name, name), []).append(value[0].cpu().numpy())
        for key, vals in per_step.items():
            records.setdefault(key, np.stack(vals))
        outputs[st.output_key] = records[st.output_key]
    return NorseResult(outputs=outputs, records=dict(records))
