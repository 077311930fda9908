"""ProcessModels: float/fixed models for the graded processes; fast models for Lava's own Conv and LIFReset.

The fast models implement the SAME Processes as Lava's stock models (lava.proc.conv Conv, lava.proc.lif
LIFReset): Conv with the vectorised kernels of respike_neuro.sim.kernels, LIFReset with exactly the stock
arithmetic in fewer passes over the state. They are chosen through a run config's
exception_proc_model_map, so the stock models (scipy per channel pair for Conv) stay selectable.
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
from lava.proc.lif.models import PyLifResetModelBitAcc, PyLifResetModelFloat
from lava.proc.lif.process import LIFReset

from respike_neuro.sim.kernels import ConvKernel, clamp_signed, fixed_conv
from respike_neuro.sim.loihi import lif_fixed_step, lif_float_step
from respike_neuro.sim.procs.processes import GradedDelay, GradedRelay, Tie

SPARSE_THRESHOLD_KEY = "respike_sparse_threshold"


def _cpu_model(proc, *tags: str):
    """Register the decorated class as a ProcessModel of `proc` on Lava's CPU backend (Loihi protocol),
    with `tags` (Lava's tag decorator extends a parent's tags)."""

    def register(cls):
        if tags:
            cls = tag(*tags)(cls)
        return implements(proc=proc, protocol=LoihiProtocol)(requires(CPU)(cls))

    return register


def _limit_blas_threads() -> None:
    """Each Lava ProcessModel is its own OS process: one BLAS thread each avoids oversubscription."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except Exception:  # pragma: no cover - optional
        pass


@_cpu_model(GradedRelay, "floating_pt")
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


@_cpu_model(GradedRelay, "fixed_pt")
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
        # int32 inputs and bias are within 24 bits each, so their sum cannot wrap before the clamp
        out, n = clamp_signed(a + self.bias, self._bits)
        self.saturated[0] += n
        self.s_out.send(out.astype(np.int32, copy=False))


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


@_cpu_model(GradedDelay, "floating_pt")
class PyGradedDelayFloat(_AbstractDelayModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    buffer: np.ndarray = LavaPyType(np.ndarray, float)


@_cpu_model(GradedDelay, "fixed_pt")
class PyGradedDelayFixed(_AbstractDelayModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    buffer: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)


@_cpu_model(Tie)
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


@_cpu_model(Conv, "floating_pt", "respike_fast")
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


@_cpu_model(Conv, "fixed_pt", "respike_fast")
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
        self.a_buf, _ = fixed_conv(kernel, s_in, int(self.weight_exp.item()), binary=self._binary,
                                   dtype=np.int32)


@_cpu_model(LIFReset, "respike_fast")  # added to the stock model's tags
class FastLifResetModelFloat(PyLifResetModelFloat):
    """Lava's float LIFReset arithmetic, the same IEEE operations in the same order, done in place
    (sim/loihi.py's `lif_float_step`): the stock model allocates four state-sized temporaries per step,
    which at ResNet stage sizes costs more than the neuron update itself."""

    def run_spk(self) -> None:
        a_in = self.a_in.recv()
        if (self.time_step % self.reset_interval) == self.reset_offset:
            self.u *= 0
            self.v *= 0
        self.s_out.send(lif_float_step(self.u, self.v, a_in, self.du, self.dv, self.bias_mant, self.vth))


@_cpu_model(LIFReset, "respike_fast")
class FastLifResetModelBitAcc(PyLifResetModelBitAcc):
    """Bit-identical to Lava's PyLifResetModelBitAcc with a third of its state-sized passes: the step is
    sim/loihi.py's `lif_fixed_step` (exact float64 decays, wrap and clip only when out of range), and the
    effective bias is recomputed only when bias_mant or bias_exp change (the stock model recomputes it
    every step)."""

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._bias_key: tuple[np.ndarray, np.ndarray] | None = None

    def _effective_bias(self) -> np.ndarray | None:
        """The bias in membrane units, or None when it is zero everywhere (nothing to add)."""
        key = self._bias_key
        if key is None or not all(np.array_equal(k, b) for k, b in zip(key, (self.bias_mant, self.bias_exp))):
            self.scale_bias()
            self._bias_key = (np.copy(self.bias_mant), np.copy(self.bias_exp))
            self._bias_any = bool(np.any(self.effective_bias))
        return self.effective_bias if self._bias_any else None

    def run_spk(self) -> None:
        a_in = self.a_in.recv()
        if (self.time_step % self.reset_interval) == self.reset_offset:
            self.u *= 0
            self.v *= 0
        bias = self._effective_bias()
        u, v, s_out, _ = lif_fixed_step(self.u, self.v, a_in, self.du, self.dv, bias, self.vth,
                                        dtype=np.int32)
        # fresh int32 arrays of the Vars' shape: rebinding them spares a copy each (Lava reads Vars by name)
        self.u, self.v = u.reshape(self.u.shape), v
        self.s_out.send(s_out)
