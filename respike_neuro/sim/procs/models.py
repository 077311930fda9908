"""ProcessModels: float/fixed models for the graded processes, and fast models for Lava's own Conv.

The fast Conv models implement lava.proc.conv.process.Conv (the SAME Process as Lava's stock models) with
the vectorised kernels of respike_neuro.sim.kernels; they are chosen through a run config's
exception_proc_model_map, so the stock scipy-per-channel-pair models stay selectable.
Timing is Lava's: a synapse sends at step t what it accumulated at step t-1 (one step of delay).
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.conv.process import Conv

from respike_neuro.sim.kernels import ConvKernel, clamp_signed, fixed_conv
from respike_neuro.sim.procs.processes import GradedDelay, GradedRelay, Tie

SPARSE_THRESHOLD_KEY = "respike_sparse_threshold"


def _limit_blas_threads() -> None:
    """Each Lava ProcessModel is its own OS process: one BLAS thread each avoids oversubscription."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except Exception:  # pragma: no cover - optional
        pass


@implements(proc=GradedRelay, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyGradedRelayFloat(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    tie: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    bias: np.ndarray = LavaPyType(np.ndarray, float)
    scale: np.ndarray = LavaPyType(np.ndarray, float)
    saturated: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._tied = bool(proc_params["tied"])

    def run_spk(self) -> None:
        if self._tied:
            self.tie.recv()
        self.s_out.send(self.scale * (self.a_in.recv() + self.bias))


@implements(proc=GradedRelay, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyGradedRelayFixed(PyLoihiProcessModel):
    """Integer relay: s_out = sat_bits(a_in + bias); scale must be one (checked by the mapper)."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    tie: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    bias: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    scale: np.ndarray = LavaPyType(np.ndarray, float)
    saturated: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._tied = bool(proc_params["tied"])
        self._quantize = bool(proc_params["quantize_input"])
        self._frac = int(proc_params["frac_bits"] or 0)
        self._bits = int(proc_params["bits"])

    def run_spk(self) -> None:
        if self._tied:
            self.tie.recv()
        a = self.a_in.recv()
        if self._quantize:
            a = np.rint(np.asarray(a, dtype=np.float64) * 2.0**self._frac)
        out, n = clamp_signed(np.asarray(a, dtype=np.int64) + self.bias, self._bits)
        self.saturated[0] += n
        self.s_out.send(out.astype(np.int32))


class _AbstractDelayModel(PyLoihiProcessModel):
    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._delay = int(proc_params["delay"])
        self._head = 0

    def run_spk(self) -> None:
        # buffer[head] holds the input of step t - delay; replace it with this step's input
        out = self.buffer[self._head].copy()
        self.buffer[self._head] = self.a_in.recv()
        self._head = (self._head + 1) % self._delay
        self.s_out.send(out)


@implements(proc=GradedDelay, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyGradedDelayFloat(_AbstractDelayModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    buffer: np.ndarray = LavaPyType(np.ndarray, float)


@implements(proc=GradedDelay, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyGradedDelayFixed(_AbstractDelayModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    buffer: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)


@implements(proc=Tie, protocol=LoihiProtocol)
@requires(CPU)
class PyTieModel(PyLoihiProcessModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)

    def run_spk(self) -> None:
        self.s_out.send(np.zeros((1,)))


class _AbstractFastConv(PyLoihiProcessModel):
    """Shared part of the fast Conv models (same Vars as Lava's stock models)."""

    kernel_size: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=8)
    stride: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=8)
    padding: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=8)
    dilation: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=8)
    groups: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)  # stock int8 overflows at 128
    num_message_bits: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=5)
    weight_exp: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    num_weight_bits: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=5)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._kernel: ConvKernel | None = None
        self._sparse_threshold = float(proc_params.get(SPARSE_THRESHOLD_KEY, 0.0) or 0.0)
        _limit_blas_threads()

    def _get_kernel(self) -> ConvKernel:
        if self._kernel is None:  # Vars are set after __init__, so build on the first step
            self._kernel = ConvKernel(
                self.weight,
                self.proc_params["input_shape"],
                self.stride,
                self.padding,
                self.dilation,
                int(self.groups[0]),
                sparse_threshold=self._sparse_threshold,
            )
            self._binary = int(self.num_message_bits.item()) == 0
        return self._kernel


@implements(proc=Conv, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt", "respike_fast")
class FastConvModelFloat(_AbstractFastConv):
    """Float Conv: im2col GEMM, or spike scatter for sparse binary input."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    a_buf: np.ndarray = LavaPyType(np.ndarray, float)
    weight: np.ndarray = LavaPyType(np.ndarray, float)

    def run_spk(self) -> None:
        kernel = self._get_kernel()
        self.a_out.send(self.a_buf)
        s_in = self.s_in.recv()
        self.a_buf = kernel(s_in, binary=self._binary)


@implements(proc=Conv, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "respike_fast")
class FastConvModelFixed(_AbstractFastConv):
    """Fixed-point Conv: integer accumulation of 8-bit mantissas, shifted by weight_exp (as Lava's
    bit-accurate Dense does; Lava's stock fixed Conv ignores weight_exp), saturated to 24 bits."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    a_buf: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    weight: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)

    def run_spk(self) -> None:
        kernel = self._get_kernel()
        self.a_out.send(self.a_buf)
        s_in = self.s_in.recv()
        out, _ = fixed_conv(kernel, s_in, int(self.weight_exp.item()), binary=self._binary)
        self.a_buf = out.astype(np.int32)
