"""Graph structure shared by every consumer of an exported NIR graph: node order and stage ports.

Standard library only: the Lava side (respike_neuro.sim, no torch), the numpy reference executor and
the torch emulator all import it.

Stage ports. The exporter names the spiking branch's boundary ports `stage{k}_out` (what stage k
computes, read by the host) and `stage{k}_in` (what the host feeds back before stage k); the host is
called with the stage index k.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

STAGE_PORT = re.compile(r"stage(\d+)_(out|in)")


def stage_port(name: str) -> tuple[int, str] | None:
    """(k, "out" | "in") for a port named stage{k}_out / stage{k}_in, else None."""
    m = STAGE_PORT.fullmatch(name)
    return (int(m.group(1)), m.group(2)) if m else None


def stage_of(name: str) -> int:
    """The stage index of a stage port, or -1 for any other name."""
    sp = stage_port(name)
    return sp[0] if sp else -1


def topological_order(nodes: Sequence[str], edges: Sequence[tuple[str, str]]) -> list[str]:
    """Kahn's order of the node keys (ties keep the given order); a cycle raises ValueError naming it."""
    indeg = {k: 0 for k in nodes}
    succ: dict[str, list[str]] = {k: [] for k in nodes}
    for src, dst in edges:
        for end in (src, dst):
            if end not in indeg:
                raise ValueError(f"edge ({src!r}, {dst!r}) names {end!r}, which is not a node of the graph")
        succ[src].append(dst)
        indeg[dst] += 1
    ready = [k for k in nodes if indeg[k] == 0]
    order: list[str] = []
    while ready:
        key = ready.pop(0)
        order.append(key)
        for nxt in succ[key]:
            indeg[nxt] -= 1
            if indeg[nxt] == 0:
                ready.append(nxt)
    if len(order) < len(indeg):
        cycle = _find_cycle(indeg, edges)
        raise ValueError(f"the graph has a cycle ({cycle}); recurrent edges are not supported")
    return order


def _find_cycle(indeg: Mapping[str, int], edges: Sequence[tuple[str, str]]) -> str:
    """Walk predecessors inside the unsorted remainder (each has one there) until a node repeats."""
    rest = {k for k, d in indeg.items() if d > 0}
    pred = {dst: src for src, dst in edges if src in rest and dst in rest}
    path, node = [], next(k for k in indeg if k in rest)
    while node not in path:
        path.append(node)
        node = pred[node]
    cycle = path[path.index(node) :][::-1]
    return " -> ".join([*cycle, cycle[0]])
