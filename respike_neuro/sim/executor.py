"""Numpy same-step executor of a plan, in Lava's float or fixed-point arithmetic (no Lava, no torch).

It evaluates the units in topological order once per logical timestep (delay lines are the identity in
logical time) with the SAME kernels and integer rules as the Lava ProcessModels, so
- in float it measures activation ranges for fixed-point calibration, and
- in fixed point it is a bit-exact shadow of the Lava run that counts saturations everywhere (Lava's
  stock LIF model has no counter), which the tests check against Lava spike for spike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from respike_neuro.graph import stage_of
from respike_neuro.sim.kernels import (
    ConvKernel,
    clamp_signed,
    fixed_conv,
    from_lava,
    lava_conv_weight,
    to_lava,
)
from respike_neuro.sim.loihi import MAX_GRADED_BITS, lif_fire, lif_fixed_step, lif_float_integrate
from respike_neuro.sim.plan import Plan


@dataclass
class PlanRun:
    outputs: dict[str, np.ndarray]
    spikes: dict[str, np.ndarray]
    host_inputs: dict[str, np.ndarray]
    ranges: dict[str, float] = field(default_factory=dict)  # unit (or 'lif#v') -> max |value|
    saturation: dict[str, int] = field(default_factory=dict)  # unit -> saturated entries


def run_plan(
    plan: Plan,
    inputs: dict[str, np.ndarray],
    timesteps: int,
    *,
    host=None,
    fixed=None,
    sparse_threshold: float = 0.0,
) -> PlanRun:
    """Run len(inputs[...]) logical steps (a multiple of `timesteps`; LIF state resets every segment)."""
    n = max((len(v) for v in inputs.values()), default=0)
    if n == 0 or n % timesteps:
        raise ValueError(f"inputs must hold a positive multiple of timesteps={timesteps} steps, got {n}")
    run = _Run(plan, inputs, n, host, fixed, sparse_threshold)
    for t in range(n):
        if t % timesteps == 0:
            run.reset_lifs()
        run.step(t)
    return PlanRun(run.outs, run.spikes, run.host_in, run.ranges, run.sat)


def _conv_kernels(plan: Plan, fixed, sparse_threshold: float) -> dict[str, ConvKernel]:
    """One ConvKernel per conv unit, with the fixed-point mantissas when `fixed` is given."""
    return {
        k: ConvKernel(
            lava_conv_weight(fixed.convs[k].mantissa if fixed else u.weight),
            u.in_shape[::-1],
            (u.stride[1], u.stride[0]),
            (u.padding[1], u.padding[0]),
            (u.dilation[1], u.dilation[0]),
            u.groups,
            sparse_threshold=sparse_threshold if u.binary_input else 0.0,
        )
        for k, u in plan.units.items()
        if u.kind == "conv"
    }


def _lif_bias(plan: Plan, fixed) -> dict[str, np.ndarray]:
    """Each LIF's bias in Lava's layout: mantissa << exponent in fixed point."""
    out = {}
    for k in plan.lif_keys:
        if fixed:
            q = fixed.lifs[k]
            mant, exp = to_lava(q.bias_mant).astype(np.int64), to_lava(q.bias_exp).astype(np.int64)
            out[k] = np.left_shift(mant, exp)
        else:
            out[k] = to_lava(plan.units[k].bias)
    return out


class _Run:
    """The state of one `run_plan` call: what each unit kind computes in one logical step."""

    def __init__(self, plan: Plan, inputs, n: int, host, fixed, sparse_threshold: float) -> None:
        units = plan.units
        self.plan, self.inputs, self.host, self.fixed = plan, inputs, host, fixed
        self.kernels = _conv_kernels(plan, fixed, sparse_threshold)
        self.outs = {o: np.zeros((n,) + units[o].shape) for o in plan.outputs}
        self.spikes = {k: np.zeros((n,) + units[k].shape, dtype=bool) for k in plan.lif_keys}
        self.host_in = {i: np.zeros((n,) + units[i].shape) for i in plan.feeds if i not in inputs}
        self.ranges: dict[str, float] = {}
        self.sat: dict[str, int] = {}
        self.state: dict[str, tuple] = {}
        self.lif_bias = _lif_bias(plan, fixed)
        self.relay_bias = {
            k: to_lava(fixed.relay_bias[k]).astype(np.int64) if fixed else to_lava(u.bias)
            for k, u in units.items()
            if u.kind == "relay"
        }

    def note(self, key: str, x) -> None:
        m = float(np.max(np.abs(x))) if np.size(x) else 0.0
        self.ranges[key] = max(self.ranges.get(key, 0.0), m)

    def count(self, key: str, c) -> None:
        self.sat[key] = self.sat.get(key, 0) + c

    def reset_lifs(self) -> None:
        for k in self.plan.lif_keys:
            z = np.zeros(self.plan.units[k].lava_shape, dtype=np.int64 if self.fixed else np.float64)
            self.state[k] = (z, z.copy())

    def step(self, t: int) -> None:
        """Every unit once, in topological order."""
        fixed = self.fixed
        val: dict[str, np.ndarray] = {}
        for key, u in self.plan.units.items():
            if u.kind == "input":
                val[key] = self.input(key, t)
                continue
            a = sum(val[p] for p in u.preds)
            if u.kind == "conv":
                y = self.conv(key, u, a)
            elif u.kind == "lif":
                y = self.lif(key, u, a, t)
            elif u.kind == "relay":
                y = self.relay(key, u, a)
            else:  # delay (identity in logical time) and output
                y = a
            val[key] = y
            if u.kind == "output":
                scale = 2.0 ** -fixed.frac_bits[u.preds[0]] if fixed else 1.0
                self.outs[key][t] = from_lava(y) * scale

    def input(self, key: str, t: int) -> np.ndarray:
        """An input port's value: given, or the host's answer to the output that feeds it."""
        fixed = self.fixed
        if key in self.inputs:
            x = np.asarray(self.inputs[key][t], dtype=np.float64)
        else:
            if self.host is None:
                raise ValueError(f"no data for input port {key!r}")
            src = self.plan.feeds[key]
            x = np.asarray(self.host(stage_of(src), t, self.outs[src][t].copy()), dtype=np.float64)
            self.host_in[key][t] = x
        if fixed:
            q, c = clamp_signed(
                np.rint(to_lava(x) * 2.0 ** fixed.frac_bits[key]).astype(np.int64), MAX_GRADED_BITS
            )
            self.count(key, c)
            return q
        self.note(key, x)
        return to_lava(x)

    def conv(self, key: str, u, a: np.ndarray) -> np.ndarray:
        if self.fixed:
            y, c = fixed_conv(self.kernels[key], a, self.fixed.convs[key].weight_exp, binary=u.binary_input)
            self.count(key, c)
            return y
        y = self.kernels[key](a, binary=u.binary_input)
        self.note(key, y)
        return y

    def lif(self, key: str, u, a: np.ndarray, t: int) -> np.ndarray:
        fixed = self.fixed
        uu, vv = self.state[key]
        bias = self.lif_bias[key]
        if fixed:
            q = fixed.lifs[key]
            uu, vv, spk, c = lif_fixed_step(uu, vv, a, q.du, q.dv, bias, q.vth)
            self.count(key, c)
        else:
            lif_float_integrate(uu, vv, a, 1, 1.0 - u.beta, bias)
            self.note(key + "#in", uu + bias)
            self.note(key + "#v", vv)
            spk = lif_fire(vv, u.theta)
        self.state[key] = (uu, vv)
        self.spikes[key][t] = from_lava(spk)
        return spk.astype(np.int64 if fixed else np.float64)

    def relay(self, key: str, u, a: np.ndarray) -> np.ndarray:
        if self.fixed:
            y, c = clamp_signed(np.asarray(a, dtype=np.int64) + self.relay_bias[key], MAX_GRADED_BITS)
            self.count(key, c)
            return y
        y = to_lava(u.scale) * (a + self.relay_bias[key])
        self.note(key, y)
        return y
