"""Reference executor for NIR graphs, written from the NIR specification with numpy only.

Why it exists: rung 3 of the correctness ladder needs a consumer of the exported NIR file that
shares no code, and no quirks, with PyTorch, snnTorch or Norse. Every node is implemented
literally from the node definitions of nir 1.0.8 (`nir/ir/*.py`); nothing is folded or assumed
(LIF's r, v_leak and v_reset are all honoured, which Norse ignores).

Time is discrete with step dt. Within one timestep all nodes advance in topological order; an
edge carries no delay and several incoming edges are summed. The continuous-time neuron
equations are integrated with forward Euler, state starting at v = 0 (or at v_leak, see
`v_init`) at the start of every call, i.e. every call is one segment:

    LIF:  v <- v + dt/tau * ((v_leak - v) + r*I) ;  z = [v > v_threshold] ;  v <- v_reset where z
    IF:   v <- v + dt * r*I                       ;  z = [v > v_threshold] ;  v <- v_reset where z
    LI:   v <- v + dt/tau * ((v_leak - v) + r*I)  ;  output v
    I:    v <- v + dt * r*I                       ;  output v
    Threshold: z = [x > threshold] ;  Delay: y[t] = x[t - delay/dt] (zero before)
    Affine: y = W x + b ;  Linear: y = W x ;  Scale: y = s * x ;  Flatten: reshape without batch
    Conv1d/Conv2d: cross-correlation as in PyTorch (weight (C_out, C_in/groups, kH, kW), bias)
    SumPool2d: window sums with zero padding ;  AvgPool2d: SumPool2d / (kH*kW) (padding counted)

Because the graph must be acyclic and edges have no delay, evaluating node after node over the
whole sequence gives the same numbers as stepping every node once per timestep; the executor
does the former, so stateless nodes fold time into one GEMM and only neurons loop over time.
CubaLIF/CubaLI (the spec leaves the order of the current and voltage updates open) and nested
NIRGraph nodes are not supported and raise NotImplementedError.

This module walks the graph (inputs, order, summing edges, outputs); what each node computes is in
`nir_nodes`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np

from respike_neuro.export.nir_nodes import (
    V_INIT,
    NodeContext,
    build_evaluator,
    check_declared,
    conv2d_nchw,
    declared_shape,
    describe_node,
    pool2d_nchw,
)
from respike_neuro.graph import topological_order

__all__ = ["ExecutionResult", "conv2d_nchw", "pool2d_nchw", "run_graph", "topological_order"]


@dataclass
class ExecutionResult:
    """What one call of `run_graph` produced.

    outputs: Output node key -> array with the same leading axes as the inputs, (T, *shape) or
      (B, T, *shape). records: every node key -> its output per timestep, same layout (only with
      record=True, else empty). batch_size is None for unbatched inputs.
    """

    outputs: dict[str, np.ndarray]
    records: dict[str, np.ndarray] = field(default_factory=dict)
    dt: float | None = None
    timesteps: int = 0
    batch_size: int | None = None


# --------------------------------------------------------------------------- inputs and dt


def _resolve_dt(graph: nir.NIRGraph, dt: float | None) -> float | None:
    source = "dt"
    if dt is None:
        meta = graph.metadata if isinstance(graph.metadata, dict) else {}
        dt, source = meta.get("dt"), "graph.metadata['dt']"
    if dt is None:
        return None
    try:
        value = float(np.asarray(dt).item())
    except (TypeError, ValueError):
        raise ValueError(f"{source} must be a positive number, got {dt!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{source} must be a positive finite number, got {dt!r}")
    return value


def _prepare_inputs(
    graph: nir.NIRGraph, inputs: Mapping[str, np.ndarray], dtype: np.dtype
) -> tuple[dict[str, np.ndarray], int, int | None]:
    """Validate the inputs and bring each to (T, B, *shape); returns them, T and B (None if unbatched)."""
    if not isinstance(inputs, Mapping):
        raise TypeError(f"inputs must be a dict of Input node key -> array, got {type(inputs).__name__}")
    ports = {k: n for k, n in graph.nodes.items() if isinstance(n, nir.Input)}
    unknown = sorted(set(inputs) - set(ports))
    if unknown:
        raise ValueError(f"inputs name unknown port(s) {unknown}; the graph's Input nodes: {sorted(ports)}")
    missing = sorted(set(ports) - set(inputs))
    if missing:
        raise ValueError(f"no input given for Input node(s) {missing}")
    feeds, layout = {}, None
    for key, node in ports.items():
        shape = declared_shape(node.input_type, "input")
        if shape is None:
            raise ValueError(f"Input node {key!r} declares no shape; cannot tell its time and batch axes")
        arr = np.asarray(inputs[key])
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"input {key!r} must be real-valued, got dtype {arr.dtype}")
        if arr.ndim not in (len(shape) + 1, len(shape) + 2) or arr.shape[arr.ndim - len(shape) :] != shape:
            dims = ", ".join(map(str, shape))
            raise ValueError(f"input {key!r} has shape {arr.shape}; expected (T, {dims}) or (B, T, {dims})")
        batched = arr.ndim == len(shape) + 2
        lead = arr.shape[:2] if batched else (arr.shape[0],)
        if layout is not None and (batched, lead) != layout[1:]:
            raise ValueError(f"input {key!r} has leading axes {lead} but input {layout[0]!r} has {layout[2]}")
        layout = (key, batched, lead)
        if min(lead) < 1:
            raise ValueError(f"input {key!r} has an empty time or batch axis: shape {arr.shape}")
        arr = arr.astype(dtype, copy=False)
        feeds[key] = np.swapaxes(arr, 0, 1) if batched else arr[:, None]
    if layout is None:
        raise ValueError("the graph has no Input node")
    _, batched, lead = layout
    return feeds, lead[-1], (lead[0] if batched else None)


# --------------------------------------------------------------------------- entry point


def run_graph(
    graph: nir.NIRGraph,
    inputs: dict[str, np.ndarray],
    *,
    dt: float | None = None,
    record: bool = False,
    dtype: Any = np.float64,
    v_init: str = "zero",
    check_types: bool = True,
) -> ExecutionResult:
    """Run one segment of a NIR graph on the given input sequences and return its outputs.

    inputs: Input node key -> array, either (T, *shape) (time first, no batch) or
    (B, T, *shape) (batch first, then time), the same layout for all inputs. Outputs come back
    in that layout. dt (the Euler step; the time unit of tau and delay) defaults to
    graph.metadata['dt'] and is only required when a node depends on it. record=True also
    returns every node's output per timestep. dtype sets the arithmetic precision (float64 by
    default). v_init: membrane at the start of the segment, 'zero' (v = 0, as the exporter,
    snnTorch and Lava assume) or 'leak' (v = v_leak, the resting potential, as Norse assumes).
    check_types: compare every node's actual input/output shape with the shape it declares
    (undeclared and scalar-parameter shapes are skipped) and raise on a mismatch. Turn it off
    for graphs whose types nir 1.0.8 inferred for non-square conv kernels: its inference takes
    kH for both spatial axes. All state is reset on every call.
    """
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"graph must be a nir.NIRGraph, got {type(graph).__name__}")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"dtype must be a floating-point type, got {dtype}")
    if v_init not in V_INIT:
        raise ValueError(f"v_init must be one of {V_INIT}, got {v_init!r}")
    ctx = NodeContext(_resolve_dt(graph, dt), dtype, v_init)

    order = topological_order(list(graph.nodes), [(str(a), str(b)) for a, b in graph.edges])
    preds, pending = _wiring(graph, order)
    evaluators = {key: build_evaluator(key, graph.nodes[key], ctx) for key in order}

    values, t_len, batch = _prepare_inputs(graph, inputs, dtype)
    records: dict[str, np.ndarray] = {}
    for key in order:
        node = graph.nodes[key]
        if isinstance(node, nir.Input):
            x = values.pop(key)
        else:
            x = _sum_incoming(key, node, preds[key], values)
            for src in preds[key]:
                pending[src] -= 1
                if pending[src] == 0 and not record and not isinstance(graph.nodes[src], nir.Output):
                    values.pop(src, None)  # free what no later node reads
        if check_types:
            check_declared(key, node, "input", x.shape[2:])
        try:
            y = evaluators[key](x)
        except (ValueError, TypeError) as err:
            raise type(err)(f"{describe_node(key, node)}: {err}") from err
        if check_types:
            check_declared(key, node, "output", y.shape[2:])
        values[key] = y
        if record:
            records[key] = y

    def layout(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.swapaxes(a, 0, 1)) if batch is not None else a[:, 0]

    outputs = {k: layout(values[k]) for k, n in graph.nodes.items() if isinstance(n, nir.Output)}
    return ExecutionResult(
        outputs=outputs,
        records={k: layout(v) for k, v in records.items()},
        dt=ctx.dt,
        timesteps=t_len,
        batch_size=batch,
    )


def _wiring(graph: nir.NIRGraph, order: list[str]) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Each node's sources and how many consumers read it; only Input nodes may have no source."""
    preds: dict[str, list[str]] = {k: [] for k in graph.nodes}
    pending: dict[str, int] = {k: 0 for k in graph.nodes}  # consumers not yet evaluated
    for src, dst in graph.edges:
        preds[dst].append(src)
        pending[src] += 1
    for key in order:
        node = graph.nodes[key]
        if isinstance(node, nir.Input) and preds[key]:
            raise ValueError(f"Input node {key!r} has incoming edges from {preds[key]}")
        if not isinstance(node, nir.Input) and not preds[key]:
            raise ValueError(f"{describe_node(key, node)} has no incoming edge and is not an Input node")
    return preds, pending


def _sum_incoming(
    key: str, node: nir.NIRNode, sources: list[str], values: dict[str, np.ndarray]
) -> np.ndarray:
    """Several incoming edges are summed; their shapes must agree exactly (no broadcasting)."""
    shapes = {src: values[src].shape[2:] for src in sources}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"{describe_node(key, node)} sums incoming edges of different shapes: {shapes}")
    total = values[sources[0]]
    for src in sources[1:]:
        total = total + values[src]
    return total
