"""Loihi 2 fixed-point plan for a mapped graph: weight mantissas/exponents, graded formats, LIF registers.

Units. Every stream is an integer q with x = q * 2**-f. Streams joined without a synapse (a relay's input
and output, a delay line, a host port feeding a LIF, a junction feeding the next block's LIF and its
identity shortcut) must share f, so f is chosen per class of such streams (union-find) as the smallest
requirement of its members:
  graded payload (relay, delay, host port, conv output):   headroom * max|x| * 2**f < 2**23   (24 bits)
  LIF input a_in (Lava shifts it by 6 into 24-bit u, v):   headroom * max(|I|, |v|) * 2**f < 2**17,
                                                           theta * 2**f < 2**17 (threshold mantissa),
                                                           |bias| * 2**f <= 4095 (13-bit mantissa << 7)
Spikes are 0/1 (f = 0). A conv with 8-bit mantissas m and exponent e (w ~= m 2**e, from
quantization.fit_weights) reading f_in and writing f_out gets Lava weight_exp = e + f_out - f_in.
Ranges come from a float run of the numpy executor on calibration inputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from respike_neuro.sim import quantization as qz
from respike_neuro.sim.executor import run_plan
from respike_neuro.sim.loihi import LIF_IN_BITS
from respike_neuro.sim.plan import Plan, PlanError, meta_value


@dataclass
class ConvQ:
    mantissa: np.ndarray  # PyTorch layout, int
    weight_exp: int  # shift applied by the Lava model (e + f_out - f_in)
    exponent: int  # w ~= mantissa * 2**exponent
    max_abs_error: float
    bits: int = qz.MAX_WEIGHT_BITS


@dataclass
class LifQ:
    du: int
    dv: int
    vth: int
    bias_mant: np.ndarray  # (C, H, W)
    bias_exp: np.ndarray
    params: dict


@dataclass
class FixedPointPlan:
    frac_bits: dict[str, int]  # unit -> f of its output stream (LIF: f of its input current)
    convs: dict[str, ConvQ]
    lifs: dict[str, LifQ]
    relay_bias: dict[str, np.ndarray]
    ranges: dict[str, float]
    calibration: str
    report: dict = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"fixed point (calibration: {self.calibration})"]
        for k, q in self.convs.items():
            lines.append(
                f"  {k:32s} w {q.bits}b exp {q.exponent:+d} shift {q.weight_exp:+d} "
                f"max|err| {q.max_abs_error:.2e}"
            )
        for k, q in self.lifs.items():
            p = q.params  # the threshold register's resolution is the input current's: theta moves
            lines.append(
                f"  {k:32s} a_in f={self.frac_bits[k + '#in']:d} vth={q.vth} dv={q.dv} "
                f"beta_eff={p['beta_effective']:.4f} theta_eff={p['theta_effective']:.6g} "
                f"({(p['theta_effective'] - p['theta']) / p['theta']:+.1e})"
            )
        return "\n".join(lines)


PINNED_KEY = "fixed_point_frac_bits"  # NIR metadata: JSON {stream: f} of a quantisation-aware model
WEIGHT_BITS_KEY = "fixed_point_weight_bits"  # NIR metadata: the mantissa width it was trained for


def pinned_frac_bits(metadata: dict | None) -> dict[str, int] | None:
    """The fixed-point formats a NIR graph's metadata pins (respike_neuro/qat.py writes them), or None."""
    v = meta_value(metadata or {}, PINNED_KEY)
    if v is None:
        return None
    try:
        pinned = json.loads(v)
        if not isinstance(pinned, dict):
            raise ValueError("not an object")
        return {str(k): int(f) for k, f in pinned.items()}
    except (TypeError, ValueError) as err:
        raise PlanError(f"graph metadata {PINNED_KEY!r} is not a JSON object of ints ({err})") from None


def pinned_weight_bits(metadata: dict | None) -> int | None:
    """The weight mantissa width a NIR graph was fine-tuned for (respike_neuro/qat.py), or None."""
    v = meta_value(metadata or {}, WEIGHT_BITS_KEY)
    if v is None:
        return None
    try:
        bits = int(v)
    except (TypeError, ValueError):
        bits = 0
    if isinstance(v, bool) or bits != v or not 2 <= bits <= qz.MAX_WEIGHT_BITS:
        raise PlanError(f"graph metadata {WEIGHT_BITS_KEY!r} must be an int in [2, {qz.MAX_WEIGHT_BITS}], "
                        f"got {v!r}")
    return bits


class _UF:
    def __init__(self):
        self.p: dict[str, str] = {}

    def find(self, k: str) -> str:
        self.p.setdefault(k, k)
        while self.p[k] != k:
            self.p[k] = self.p[self.p[k]]
            k = self.p[k]
        return k

    def union(self, a: str, b: str) -> None:
        self.p[self.find(a)] = self.find(b)


def _stream_in(plan: Plan, key: str) -> str:
    """Name of the integer stream a unit reads."""
    u = plan.units[key]
    return key + "#in" if u.kind in ("lif", "conv") else key


def plan_fixed_point(
    plan: Plan,
    timesteps: int,
    *,
    calibration: dict[str, np.ndarray] | None = None,
    headroom: float = 2.0,
    seed: int = 0,
    weight_bits: int = qz.MAX_WEIGHT_BITS,
    frac_bits: dict[str, int] | None = None,
) -> FixedPointPlan:
    """Quantise weights, pick graded formats and LIF registers from the graph and a float calibration run.

    frac_bits: formats pinned in advance (a previous plan's `frac_bits`, e.g. a quantisation-aware
    fine-tuned model's, recorded in its NIR metadata): no calibration run, and the plan reproduces that
    model's integer arithmetic exactly. Checked against the graph's streams.
    """
    units = plan.units
    uf = _UF()
    for key, u in units.items():
        uf.find(key)
        if u.kind in ("lif", "conv"):
            uf.find(key + "#in")
        for p in u.preds:
            if units[p].kind == "lif" and u.kind not in ("conv", "output"):
                raise PlanError(
                    f"fixed point: spikes of {p!r} feed {u.kind} {key!r} directly; only convs may"
                )
            uf.union(p, _stream_in(plan, key))
        if u.kind in ("relay", "delay", "output"):
            uf.union(key, key)  # output stream = input stream (relay adds a bias in the same units)
    relays = {uf.find(o) for o, u in units.items() if u.kind == "relay"}
    for k in plan.lif_keys:
        if uf.find(k) in relays:
            raise PlanError(f"fixed point: spike stream of {k!r} is joined with a graded stream")
    if frac_bits is not None:
        frac, ranges = _check_pinned(plan, uf, frac_bits), {}
        cal_desc = "pinned formats (no calibration)"
    else:
        if calibration is None:
            rng = np.random.default_rng(seed)
            calibration = {p: rng.normal(size=(4 * timesteps,) + units[p].shape) for p in plan.inputs}
            cal_desc = f"synthetic N(0,1) inputs, {4 * timesteps} steps, seed {seed}"
        else:
            cal_desc = f"given inputs, {len(next(iter(calibration.values())))} steps"
        missing = [p for p in plan.inputs if p not in calibration]
        if missing:
            raise ValueError(f"calibration needs data for every input port; missing {missing}")
        ranges = run_plan(plan, calibration, timesteps).ranges
        frac = _calibrated_frac_bits(plan, uf, ranges, headroom)
    return _quantise(plan, frac, ranges, cal_desc, headroom, weight_bits)


def _stream_keys(plan: Plan) -> list[str]:
    """Every integer stream the plan has a format for: each unit's output, and each LIF's/conv's input."""
    keys = []
    for key, u in plan.units.items():
        keys.append(key)
        if u.kind in ("lif", "conv"):
            keys.append(key + "#in")
    return keys


def _check_pinned(plan: Plan, uf: _UF, frac_bits: dict[str, int]) -> dict[str, int]:
    keys = _stream_keys(plan)
    missing, extra = sorted(set(keys) - set(frac_bits)), sorted(set(frac_bits) - set(keys))
    if missing or extra:
        raise PlanError(
            f"pinned fixed-point formats do not fit this graph: missing {missing[:4]}, unknown {extra[:4]}"
        )
    frac = {k: int(frac_bits[k]) for k in keys}
    for k in plan.lif_keys:
        if frac[k] != 0:
            raise PlanError(f"pinned formats: spike stream {k!r} must have 0 fractional bits, got {frac[k]}")
    by_class: dict[str, tuple[str, int]] = {}
    for k in keys:
        r = uf.find(k)
        first = by_class.setdefault(r, (k, frac[k]))
        if first[1] != frac[k]:
            raise PlanError(
                f"pinned formats: {k!r} (f={frac[k]}) and {first[0]!r} (f={first[1]}) are joined "
                "without a synapse and must share a format"
            )
    return frac


def _calibrated_frac_bits(plan: Plan, uf: _UF, ranges: dict[str, float], headroom: float) -> dict[str, int]:
    units = plan.units
    # spike streams are 0/1 integers: f = 0
    need: dict[str, int] = {}

    def require(stream: str, f: int) -> None:
        r = uf.find(stream)
        need[r] = min(need.get(r, f), f)

    for key, u in units.items():
        if u.kind == "lif":
            require(key, 0)
            m = max(ranges.get(key + "#in", 0.0), ranges.get(key + "#v", 0.0), 1e-6)
            require(key + "#in", qz.fit_graded(m, bits=LIF_IN_BITS, headroom=headroom).frac_bits)
            require(key + "#in", qz.fit_graded(u.theta, bits=LIF_IN_BITS, headroom=1.0).frac_bits)
            if np.any(u.bias):  # bias * 2**(f+6) must fit the 13-bit mantissa << 7: |b| 2**f <= 4095
                require(
                    key + "#in", qz.fit_graded(float(np.abs(u.bias).max()), bits=13, headroom=1.0).frac_bits
                )
        elif u.kind in ("relay", "delay", "input", "conv"):
            m = max(ranges.get(key, 0.0), ranges.get(u.preds[0], 0.0) if u.kind == "delay" else 0.0, 1e-6)
            require(key, qz.fit_graded(m, bits=24, headroom=headroom).frac_bits)
    spike_roots = {uf.find(k) for k in plan.lif_keys}
    for k in plan.lif_keys:
        if need.get(uf.find(k), 0) != 0:
            raise PlanError(f"fixed point: spike stream of {k!r} is joined with a graded stream")

    def f_of(stream: str) -> int:
        r = uf.find(stream)
        return 0 if r in spike_roots else need.get(r, 0)

    frac: dict[str, int] = {}
    for key, u in units.items():
        frac[key] = 0 if u.kind == "lif" else f_of(key)
        if u.kind in ("lif", "conv"):
            frac[key + "#in"] = f_of(key + "#in")
        if u.kind == "relay":
            frac[key] = f_of(key)
    return frac


def _quantise(
    plan: Plan, frac: dict[str, int], ranges: dict[str, float], cal_desc: str, headroom: float,
    weight_bits: int,
) -> FixedPointPlan:
    units = plan.units
    convs: dict[str, ConvQ] = {}
    lifs: dict[str, LifQ] = {}
    relay_bias: dict[str, np.ndarray] = {}
    for key, u in units.items():
        if u.kind == "conv":
            wf = qz.fit_weights(u.weight, bits=weight_bits)
            err = float(np.max(np.abs(u.weight - wf.mantissa * 2.0**wf.exponent)))
            convs[key] = ConvQ(
                np.asarray(wf.mantissa),
                int(wf.exponent + frac[key] - frac[key + "#in"]),
                int(wf.exponent),
                err,
                wf.bits,
            )
        elif u.kind == "lif":
            p = qz.lif_fixed_params(u.beta, u.theta, 2.0 ** frac[key + "#in"], bias=u.bias)
            lifs[key] = LifQ(
                int(p["du"]),
                int(p["dv"]),
                int(p["vth"]),
                np.asarray(p["bias_mant"]),
                np.asarray(p["bias_exp"]),
                {k: v for k, v in p.items() if np.isscalar(v)},
            )
        elif u.kind == "relay":
            if not np.all(u.scale == 1.0):
                raise PlanError(f"node {key!r}: fixed point supports Scale nodes with unit scale only")
            b, n_sat = qz.to_fixed(u.bias, qz.GradedFormat(frac[key], 24))
            if n_sat:
                raise PlanError(f"node {key!r}: bias saturates its 24-bit graded format (f={frac[key]})")
            relay_bias[key] = b
    report = {
        "calibration": cal_desc,
        "headroom": headroom,
        "weight_bits": weight_bits,
        "frac_bits": {k: v for k, v in frac.items()},
        "weights": {
            k: {"exponent": q.exponent, "shift": q.weight_exp, "max_abs_error": q.max_abs_error}
            for k, q in convs.items()
        },
        "lif": {k: q.params for k, q in lifs.items()},
    }
    return FixedPointPlan(frac, convs, lifs, relay_bias, ranges, cal_desc, report)
