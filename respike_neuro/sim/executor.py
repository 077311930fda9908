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
    units = plan.units
    kernels = {
        k: ConvKernel(
            lava_conv_weight(fixed.convs[k].mantissa if fixed else u.weight),
            u.in_shape[::-1],
            (u.stride[1], u.stride[0]),
            (u.padding[1], u.padding[0]),
            (u.dilation[1], u.dilation[0]),
            u.groups,
            sparse_threshold=sparse_threshold if u.binary_input else 0.0,
        )
        for k, u in units.items()
        if u.kind == "conv"
    }
    outs = {o: np.zeros((n,) + units[o].shape) for o in plan.outputs}
    spikes = {k: np.zeros((n,) + units[k].shape, dtype=bool) for k in plan.lif_keys}
    host_in = {i: np.zeros((n,) + units[i].shape) for i in plan.feeds if i not in inputs}
    ranges: dict[str, float] = {}
    sat: dict[str, int] = {}
    state: dict[str, tuple] = {}
    lif_bias = {}
    for k in plan.lif_keys:
        u = units[k]
        if fixed:
            q = fixed.lifs[k]
            lif_bias[k] = np.left_shift(
                to_lava(q.bias_mant).astype(np.int64), to_lava(q.bias_exp).astype(np.int64)
            )
        else:
            lif_bias[k] = to_lava(u.bias)
    relay_bias = {
        k: to_lava(fixed.relay_bias[k]).astype(np.int64) if fixed else to_lava(u.bias)
        for k, u in units.items()
        if u.kind == "relay"
    }

    def note(key, x):
        m = float(np.max(np.abs(x))) if np.size(x) else 0.0
        ranges[key] = max(ranges.get(key, 0.0), m)

    for t in range(n):
        if t % timesteps == 0:
            for k in plan.lif_keys:
                z = np.zeros(units[k].lava_shape, dtype=np.int64 if fixed else np.float64)
                state[k] = (z, z.copy())
        val: dict[str, np.ndarray] = {}
        for key, u in units.items():
            if u.kind == "input":
                if key in inputs:
                    x = np.asarray(inputs[key][t], dtype=np.float64)
                else:
                    if host is None:
                        raise ValueError(f"no data for input port {key!r}")
                    src = plan.feeds[key]
                    x = np.asarray(host(stage_of(src), t, outs[src][t].copy()), dtype=np.float64)
                    host_in[key][t] = x
                if fixed:
                    q, c = clamp_signed(
                        np.rint(to_lava(x) * 2.0 ** fixed.frac_bits[key]).astype(np.int64), MAX_GRADED_BITS
                    )
                    sat[key] = sat.get(key, 0) + c
                    val[key] = q
                else:
                    val[key] = to_lava(x)
                    note(key, x)
                continue
            a = sum(val[p] for p in u.preds)
            if u.kind == "conv":
                if fixed:
                    y, c = fixed_conv(kernels[key], a, fixed.convs[key].weight_exp, binary=u.binary_input)
                    sat[key] = sat.get(key, 0) + c
                else:
                    y = kernels[key](a, binary=u.binary_input)
                    note(key, y)
            elif u.kind == "lif":
                uu, vv = state[key]
                if fixed:
                    q = fixed.lifs[key]
                    uu, vv, spk, c = lif_fixed_step(uu, vv, a, q.du, q.dv, lif_bias[key], q.vth)
                    sat[key] = sat.get(key, 0) + c
                else:
                    lif_float_integrate(uu, vv, a, 1, 1.0 - u.beta, lif_bias[key])
                    note(key + "#in", uu + lif_bias[key])
                    note(key + "#v", vv)
                    spk = lif_fire(vv, u.theta)
                state[key] = (uu, vv)
                y = spk.astype(np.int64 if fixed else np.float64)
                spikes[key][t] = from_lava(spk)
            elif u.kind == "relay":
                if fixed:
                    y, c = clamp_signed(np.asarray(a, dtype=np.int64) + relay_bias[key], MAX_GRADED_BITS)
                    sat[key] = sat.get(key, 0) + c
                else:
                    y = to_lava(u.scale) * (a + relay_bias[key])
                    note(key, y)
            else:  # delay (identity in logical time) and output
                y = a
            val[key] = y
            if u.kind == "output":
                scale = 2.0 ** -fixed.frac_bits[u.preds[0]] if fixed else 1.0
                outs[key][t] = from_lava(y) * scale
    return PlanRun(outs, spikes, host_in, ranges, sat)
