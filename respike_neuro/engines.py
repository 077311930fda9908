"""Where the spiking branch can run: one table of engines, read by the runtime, the bridge and every CLI.

An engine runs the plan of a NIR graph (sim/plan.py) in one of two arithmetics (MODES): Lava's float64
models, or Loihi 2's integer widths (sim/fixed_point.py). The runtime (sim/runtime.py) runs the
engines marked `in_runtime` itself; "torch" is the bridge's (bridge.py): the emulator's arithmetic
batched in torch_emulator.py. Nothing here imports torch or Lava: sim/ reads this table too.
"""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("float", "fixed")  # Lava's float64 models | Loihi 2 fixed point


@dataclass(frozen=True)
class Engine:
    name: str
    summary: str  # one phrase, for --help
    lava: bool  # starts Lava processes
    modes: tuple[str, ...]  # the arithmetics it runs
    in_runtime: bool  # LavaSpikingBranch runs it (else only the bridge does)


_TORCH = "the emulator's arithmetic batched in torch"
ENGINES = {
    e.name: e
    for e in (
        Engine("cpu", "Lava CPU simulation", lava=True, modes=MODES, in_runtime=True),
        Engine("loihi2", "Intel's backend (if installed)", lava=True, modes=("fixed",), in_runtime=True),
        Engine("emulator", "numpy, no Lava", lava=False, modes=MODES, in_runtime=True),
        Engine("torch", _TORCH, lava=False, modes=MODES, in_runtime=False),
    )
}
RUNTIME_BACKENDS = tuple(n for n, e in ENGINES.items() if e.in_runtime)  # LavaSpikingBranch(backend=...)
BRIDGE_BACKENDS = tuple(ENGINES)  # HybridBridge(backend=...)


def backend_help(names: tuple[str, ...]) -> str:
    """'cpu: Lava CPU simulation; ...' for the engines `names`, in that order."""
    return "; ".join(f"{n}: {ENGINES[n].summary}" for n in names)
