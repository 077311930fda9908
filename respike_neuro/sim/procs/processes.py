"""Lava Processes for the real-valued (graded-spike) streams of a ReSpike graph.

lava.proc.graded.GradedVec only has a fixed-point model, thresholds its output and has no bias, so the
graph's junctions, biased relays, host ports and delay lines get these small processes instead.
Every one is a graded neuron: it emits a payload every timestep and adds no synaptic delay.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


class GradedRelay(AbstractProcess):
    """Graded neuron s_out[t] = scale * (sum of a_in[t] + bias); no state, no synaptic delay.

    Fixed point (`frac_bits` set): payloads are integers x * 2**frac_bits saturated to `bits`;
    with `quantize_input` the incoming payload is a host float that is quantised here (the chip border).
    An optional `tie` in-port only joins otherwise separate Lava components into one network.
    """

    def __init__(
        self,
        *,
        shape: tuple[int, ...],
        bias: np.ndarray | float = 0.0,
        scale: np.ndarray | float = 1.0,
        frac_bits: int | None = None,
        quantize_input: bool = False,
        bits: int = 24,
        tied: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(
            shape=shape, frac_bits=frac_bits, quantize_input=quantize_input, bits=bits, tied=tied, name=name
        )
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.tie = InPort(shape=(1,))
        self.bias = Var(shape=shape, init=np.broadcast_to(np.asarray(bias), shape).copy())
        self.scale = Var(shape=shape, init=np.broadcast_to(np.asarray(scale, dtype=float), shape).copy())
        self.saturated = Var(shape=(1,), init=0)


class GradedDelay(AbstractProcess):
    """Delay line: s_out[t] = a_in[t - delay] (zeros before). Matches a skip path to the latency of its
    sibling branch; on Loihi 2 this is a chain of relay neurons or synaptic delay."""

    def __init__(self, *, shape: tuple[int, ...], delay: int, name: str | None = None) -> None:
        if int(delay) < 1:
            raise ValueError(f"GradedDelay needs delay >= 1, got {delay}")
        super().__init__(shape=shape, delay=int(delay), name=name)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.buffer = Var(shape=(int(delay),) + tuple(shape), init=0)


class Tie(AbstractProcess):
    """Sends zeros on a (1,) port to the `tie` in-ports of GradedRelays so that Lava compiles host-
    separated parts of a hybrid graph (stage k+1 is only fed through the host) as one network."""

    def __init__(self, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self.s_out = OutPort(shape=(1,))
