"""Loihi 2 fixed-point formats: 8-bit weights with a shared exponent, graded payloads, LIF registers.

Pure numpy (this module runs on the Lava side and must never import torch).

Weights.  Loihi 2 stores a synaptic weight as a signed 8-bit mantissa and applies one exponent per
connection group (layer):  w ~= m * 2**e,  m in [-2**(b-1), 2**(b-1) - 1].  lava-dl already fits a
weight matrix to this format (`lava.lib.dl.netx.utils.optimize_weight_bits`), but importing it pulls
in torch (the `lava.lib.dl` namespace imports slayer; checked with lava-dl 0.6.0: `torch` lands in
`sys.modules`), and it only re-packs weights that slayer has *already* rounded to integers.  The same
rule as lava-nc's torch-free `lava.utils.weightutils._determine_weight_exp` is therefore implemented
here on real-valued weights (`fit_weights`).

Graded streams.  Real-valued streams (stem input, membrane shortcut, host-injected features) travel as
graded spikes whose payload is at most 24 bits on Loihi 2:  x ~= q * 2**-f  (`GradedFormat`).

LIF.  Lava's bit-accurate LIF (lava/proc/lif/models.py, PyLifModelBitAcc) computes per step
    u <- trunc0(u * (4096 - (du + 1)) / 2**12) + (a_in << 6)            (24-bit, wraps)
    v <- trunc0(v * (4096 - dv) / 2**12) + u + (bias_mant << bias_exp)  (24-bit, clipped)
    spike if v > (vth << 6);  v <- 0 after a spike
where trunc0 rounds toward zero.  `lif_fixed_params` maps  v <- beta*v + I, spike if v > theta, reset 0
onto it for an integer input  a_in = I * input_scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Loihi 2 widths: sim/loihi.py owns them (re-exported here for the formats' users)
from respike_neuro.sim.loihi import (
    ACT_SHIFT,
    BIAS_EXP_MAX,
    BIAS_MANT_MAX,
    BIAS_MANT_MIN,
    DECAY_UNITY,
    EMULATOR_WEIGHT_BITS,
    MAX_ABS_ACTIVATION,
    MAX_GRADED_BITS,
    MAX_WEIGHT_BITS,
    STATE_BITS,
    VTH_MANT_MAX,
)


def _check_bits(bits: Any, name: str, low: int, high: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(bits).__name__}")
    if not low <= int(bits) <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {bits}")
    return int(bits)


def _finite_array(x: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a real-valued array, got {type(x).__name__}") from err
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def _finite_positive(x: Any, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    if not math.isfinite(float(x)) or float(x) <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {x}")
    return float(x)


# --------------------------------------------------------------------------------------------- weights
@dataclass(frozen=True, eq=False)
class WeightFormat:
    """A layer's weights as integer mantissas with one shared exponent: w ~= mantissa * 2**exponent."""

    mantissa: np.ndarray
    exponent: int
    bits: int

    def __post_init__(self) -> None:
        bits = _check_bits(self.bits, "bits", 2, EMULATOR_WEIGHT_BITS)
        m = np.asarray(self.mantissa)
        if not np.issubdtype(m.dtype, np.integer):
            raise TypeError(f"mantissa must be an integer array, got dtype {m.dtype}")
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        if m.size and (m.min() < lo or m.max() > hi):
            raise ValueError(f"mantissa must lie in [{lo}, {hi}] for bits={bits}, got [{m.min()}, {m.max()}]")
        if isinstance(self.exponent, bool) or not isinstance(self.exponent, (int, np.integer)):
            raise TypeError(f"exponent must be an int, got {type(self.exponent).__name__}")
        m = m.astype(np.int32, copy=True)
        m.setflags(write=False)
        object.__setattr__(self, "mantissa", m)
        object.__setattr__(self, "exponent", int(self.exponent))
        object.__setattr__(self, "bits", bits)

    @property
    def step(self) -> float:
        """Value of one mantissa LSB, 2**exponent."""
        return 2.0**self.exponent

    def dequantized(self) -> np.ndarray:
        """The real weights this format represents (float64)."""
        return self.mantissa.astype(np.float64) * self.step

    def lava_synapse(self) -> dict[str, Any]:
        """Arguments for Lava's bit-accurate Dense/Sparse models (and netx), mixed sign mode.

        Lava keeps mixed-sign weights as even 9-bit integers in [-256, 254] and drops
        (9 - num_weight_bits) LSBs, so the mantissa is shifted left by t = 9 - bits and the exponent
        lowered by t:  (m << t) * 2**(e - t) == m * 2**e.  The accumulated input is then shifted by
        weight_exp with floor rounding (right shift) after summation.  Pass sign_mode=MIXED (value 1):
        Lava's inhibitory mode clips magnitudes at 255 and would alter m = -2**(bits-1).
        Note: Lava 0.10's CPU fixed-point *Conv* model ignores weight_exp; there pass `mantissa` and
        fold 2**exponent into the consumer's integer scale (`lif_fixed_params(input_scale=...)`).
        """
        if self.bits > MAX_WEIGHT_BITS:
            raise ValueError(f"{self.bits}-bit weights exceed Loihi 2's {MAX_WEIGHT_BITS}-bit synapses")
        t = 9 - self.bits
        return {
            "weights": np.left_shift(self.mantissa.astype(np.int32), t),
            "weight_exp": self.exponent - t,
            "num_weight_bits": self.bits,
            "sign_mode": 1,
        }


def fit_weights(w: np.ndarray, bits: int = 8) -> WeightFormat:
    """Fit real weights to a signed `bits`-bit mantissa and one shared power-of-two exponent.

    Loihi 2 stores at most 8 bits; up to EMULATOR_WEIGHT_BITS are accepted for emulator diagnostics.

    Exponent: the smallest e with every w / 2**e inside [-2**(b-1), 2**(b-1) - 1], i.e. with
    s = min((2**(b-1) - 1) / max(w, 0), 2**(b-1) / max(-w, 0)),  e = -floor(log2 s)  (the rule of
    lava-nc's `_determine_weight_exp` for mixed-sign weights; a side with no weights imposes nothing).
    Mantissa: m = rint(w / 2**e), round half to even, never clipped (the exponent guarantees range).
    Worst-case error: |w - m 2**e| <= 2**(e-1) < 1/s <= max|w| / (2**(b-1) - 1), e.g. 1/127 of the
    largest weight at 8 bits.  Values already of the form m * 2**e round-trip exactly.
    All-zero weights give mantissa 0 and exponent 0.  Single-sign layers also use a signed mantissa
    (one bit of headroom unused; BN-folded convs are mixed-sign in practice).
    """
    bits = _check_bits(bits, "bits", 2, EMULATOR_WEIGHT_BITS)
    arr = _finite_array(w, "w")
    if arr.size == 0:
        raise ValueError("w is empty")
    m_max, m_min = (1 << (bits - 1)) - 1, -(1 << (bits - 1))
    pos, neg = max(float(arr.max()), 0.0), max(-float(arr.min()), 0.0)
    if pos == 0.0 and neg == 0.0:
        return WeightFormat(np.zeros(arr.shape, dtype=np.int32), 0, bits)
    scale = min(m_max / pos if pos > 0 else math.inf, -m_min / neg if neg > 0 else math.inf)
    exponent = -math.floor(math.log2(scale))
    # floating point could put w / 2**e a hair outside the range at an exact boundary: clip is a no-op
    # otherwise (see the bound above)
    mantissa = np.clip(np.rint(np.ldexp(arr, -exponent)), m_min, m_max).astype(np.int32)
    return WeightFormat(mantissa, exponent, bits)


def max_abs_error(w: np.ndarray, fmt: WeightFormat) -> float:
    """Largest |w - dequantized| over the layer (0 for an exactly representable layer)."""
    arr = _finite_array(w, "w")
    if arr.shape != fmt.mantissa.shape:
        raise ValueError(f"w has shape {arr.shape}, the format {fmt.mantissa.shape}")
    return float(np.max(np.abs(arr - fmt.dequantized()))) if arr.size else 0.0


# ---------------------------------------------------------------------------------------- graded spikes
@dataclass(frozen=True)
class GradedFormat:
    """A graded-spike payload: x ~= q * 2**-frac_bits with q a signed `bits`-bit integer."""

    frac_bits: int
    bits: int = MAX_GRADED_BITS

    def __post_init__(self) -> None:
        if isinstance(self.frac_bits, bool) or not isinstance(self.frac_bits, (int, np.integer)):
            raise TypeError(f"frac_bits must be an int, got {type(self.frac_bits).__name__}")
        object.__setattr__(self, "frac_bits", int(self.frac_bits))
        object.__setattr__(self, "bits", _check_bits(self.bits, "bits", 2, MAX_GRADED_BITS))

    @property
    def max_int(self) -> int:
        return (1 << (self.bits - 1)) - 1

    @property
    def min_int(self) -> int:
        return -(1 << (self.bits - 1))

    @property
    def step(self) -> float:
        """Resolution, 2**-frac_bits (also the worst rounding error times two)."""
        return 2.0**-self.frac_bits

    @property
    def max_value(self) -> float:
        """Largest representable value; anything larger saturates."""
        return self.max_int * self.step

    def to_dict(self) -> dict[str, Any]:
        return {"frac_bits": self.frac_bits, "bits": self.bits, "step": self.step,
                "max_value": self.max_value}


def fit_graded(max_abs: float, bits: int = MAX_GRADED_BITS, headroom: float = 2.0) -> GradedFormat:
    """Most fractional bits such that `headroom * max_abs` still fits the signed `bits`-bit payload.

    f = floor(log2((2**(bits-1) - 1) / (headroom * max_abs))); f may be negative for huge ranges.
    `max_abs` is a calibrated range (e.g. the largest |x| seen on calibration clips); the default
    headroom of 2 (one spare integer bit) absorbs test-time values up to twice that before saturating.
    Rounding error is at most 2**-(f+1).
    """
    bits = _check_bits(bits, "bits", 2, MAX_GRADED_BITS)
    max_abs = _finite_positive(max_abs, "max_abs")
    headroom = _finite_positive(headroom, "headroom")
    if headroom < 1.0:
        raise ValueError(f"headroom must be >= 1 (below 1 calibrated values saturate), got {headroom}")
    frac = math.floor(math.log2(((1 << (bits - 1)) - 1) / (headroom * max_abs)))
    fmt = GradedFormat(frac, bits)
    while headroom * max_abs > fmt.max_value:  # guard log2 rounding at exact powers of two
        fmt = GradedFormat(fmt.frac_bits - 1, bits)
    return fmt


def to_fixed(values: np.ndarray, fmt: GradedFormat) -> tuple[np.ndarray, int]:
    """Quantise to payload integers rint(x * 2**f) (half to even), clipping to the payload range.

    Returns (int32 array, saturated_count): the count of elements that were clipped, so a runtime can
    report saturation instead of silently distorting the stream.
    """
    if not isinstance(fmt, GradedFormat):
        raise TypeError(f"fmt must be a GradedFormat, got {type(fmt).__name__}")
    arr = _finite_array(values, "values")
    q = np.rint(np.ldexp(arr, fmt.frac_bits))
    saturated = int(np.count_nonzero((q > fmt.max_int) | (q < fmt.min_int)))
    return np.clip(q, fmt.min_int, fmt.max_int).astype(np.int32), saturated


def from_fixed(ints: np.ndarray, fmt: GradedFormat) -> np.ndarray:
    """Payload integers back to real values, q * 2**-f."""
    if not isinstance(fmt, GradedFormat):
        raise TypeError(f"fmt must be a GradedFormat, got {type(fmt).__name__}")
    return np.ldexp(np.asarray(ints, dtype=np.float64), -fmt.frac_bits)


# ------------------------------------------------------------------------------------------------- LIF
def fit_bias(bias: np.ndarray, v_scale: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-neuron bias as (mantissa 13-bit signed, exponent 0..7) in membrane units.

    b_v = bias * v_scale; per neuron the smallest exponent with rint(b_v / 2**e) inside the 13-bit
    range.  Returns (bias_mant int32, bias_exp int32, max |error| in real units).
    """
    b = _finite_array(bias, "bias")
    v_scale = _finite_positive(v_scale, "v_scale")
    bv = b * v_scale
    exp = np.full(b.shape, -1, dtype=np.int32)  # -1: no exponent found yet
    for e in range(BIAS_EXP_MAX + 1):
        mant = np.rint(np.ldexp(bv, -e))
        fits = (mant >= BIAS_MANT_MIN) & (mant <= BIAS_MANT_MAX)
        exp = np.where((exp < 0) & fits, e, exp)
    if np.any(exp < 0):
        worst = float(np.max(np.abs(b)))
        limit = BIAS_MANT_MAX * 2**BIAS_EXP_MAX / v_scale
        raise ValueError(f"bias {worst:.6g} exceeds the 13-bit mantissa << 7 range ({limit:.6g} at this "
                         f"scale); lower input_scale")
    mant = np.rint(np.ldexp(bv, -exp)).astype(np.int32)
    err = float(np.max(np.abs(np.ldexp(mant.astype(np.float64), exp) - bv))) / v_scale if b.size else 0.0
    return mant, exp.astype(np.int32), err


def lif_fixed_params(beta: float, theta: float, input_scale: float, *,
                     bias: np.ndarray | None = None) -> dict[str, Any]:
    """Lava fixed-point LIF registers for v <- beta*v + I, spike if v > theta, reset to 0 (same step).

    `input_scale` is the number of integer activation units per unit of real current: the neuron
    receives a_in = I * input_scale (e.g. 2**(f_in - e_w) after a conv with weight exponent e_w fed
    by payloads with f_in fractional bits; f_in = 0 for binary spikes).
    - du = 4095: with Lava's ds_offset of 1 the current decays fully, u = a_in << 6 every step.
    - dv = rint((1 - beta) * 4096) clipped to [0, 4095]: voltage keeps (4096 - dv) / 4096 per step
      (beta = 0.25 is exact: dv = 3072).  beta = 0 cannot be exact (dv = 4096 is not 12-bit).
    - vth = rint(theta * input_scale): u and the threshold are both shifted by 6, so
      v_int = 64 * input_scale * v_real and (vth << 6) compares against 64 * theta * input_scale.
    - bias (optional, real, per neuron; a conv bias I = W s + b): 13-bit mantissa << 3-bit exponent
      in membrane units v_scale = 64 * input_scale.
    Errors reported: beta_error = |beta_eff - beta|, theta_error = |vth/input_scale - theta|, and
    decay_truncation_bound: the decay rounds toward zero (< 1 membrane unit per step), so v drifts by
    at most 1 / ((1 - beta_eff) * v_scale) in real units.  Limits: |a_in| <= 2**17 - 1 or u wraps
    (max_abs_current), |v| <= 2**23 - 1 (clipped; max_abs_voltage).
    """
    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.integer, np.floating)):
        raise TypeError(f"beta must be a real number, got {type(beta).__name__}")
    if not 0.0 <= float(beta) <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    beta = float(beta)
    theta = _finite_positive(theta, "theta")
    input_scale = _finite_positive(input_scale, "input_scale")
    dv = int(min(max(round((1.0 - beta) * DECAY_UNITY), 0), DECAY_UNITY - 1))
    beta_eff = (DECAY_UNITY - dv) / DECAY_UNITY
    vth = int(round(theta * input_scale))
    if vth < 1:
        raise ValueError(f"theta * input_scale = {theta * input_scale:.4g} rounds to a zero threshold; "
                         f"raise input_scale to at least {1.0 / theta:.4g}")
    if vth > VTH_MANT_MAX:
        raise ValueError(f"theta * input_scale = {theta * input_scale:.6g} exceeds the 17-bit threshold "
                         f"mantissa ({VTH_MANT_MAX}); lower input_scale below {VTH_MANT_MAX / theta:.6g}")
    v_scale = float(1 << ACT_SHIFT) * input_scale
    params: dict[str, Any] = {
        "du": DECAY_UNITY - 1,
        "dv": dv,
        "vth": vth,
        "beta": beta,
        "beta_effective": beta_eff,
        "beta_error": abs(beta_eff - beta),
        "theta": theta,
        "theta_effective": vth / input_scale,
        "theta_error": abs(vth / input_scale - theta),
        "input_scale": input_scale,
        "v_scale": v_scale,
        "decay_truncation_bound": (1.0 / ((1.0 - beta_eff) * v_scale)),
        "max_abs_current": MAX_ABS_ACTIVATION / input_scale,
        "max_abs_voltage": ((1 << (STATE_BITS - 1)) - 1) / v_scale,
    }
    if bias is not None:
        mant, exp, err = fit_bias(bias, v_scale)
        params.update(bias_mant=mant, bias_exp=exp, bias_error=err)
    else:
        params.update(bias_mant=0, bias_exp=0, bias_error=0.0)
    return params


# ---------------------------------------------------------------------------------------------- report
@dataclass
class LayerQuantization:
    """What quantising one layer's weights cost."""

    weight_exponent: int
    weight_bits: int
    max_abs_weight: float
    max_abs_weight_error: float

    def to_dict(self) -> dict[str, Any]:
        return {"weight_exponent": self.weight_exponent, "weight_bits": self.weight_bits,
                "max_abs_weight": self.max_abs_weight, "max_abs_weight_error": self.max_abs_weight_error}


_LIF_SCALARS = ("du", "dv", "vth", "beta", "beta_effective", "beta_error", "theta", "theta_effective",
                "theta_error", "input_scale", "v_scale", "decay_truncation_bound", "max_abs_current",
                "max_abs_voltage", "bias_error")


@dataclass
class QuantizationReport:
    """Per-layer record of a fixed-point mapping; JSON-serialisable through `to_dict()`.

    The mapper fills weights, graded formats and LIF registers; the runtime adds saturation counts
    (clipped payloads) as it runs, accumulating over steps.
    """

    layers: dict[str, LayerQuantization] = field(default_factory=dict)
    graded: dict[str, GradedFormat] = field(default_factory=dict)
    lif: dict[str, dict[str, float | int]] = field(default_factory=dict)
    saturation: dict[str, int] = field(default_factory=dict)

    def add_weights(self, name: str, w: np.ndarray, fmt: WeightFormat) -> LayerQuantization:
        """Record layer `name` quantised as `fmt` (error measured against the real weights `w`)."""
        arr = _finite_array(w, "w")
        entry = LayerQuantization(fmt.exponent, fmt.bits, float(np.max(np.abs(arr))) if arr.size else 0.0,
                                  max_abs_error(arr, fmt))
        self.layers[str(name)] = entry
        return entry

    def add_graded(self, name: str, fmt: GradedFormat) -> None:
        if not isinstance(fmt, GradedFormat):
            raise TypeError(f"fmt must be a GradedFormat, got {type(fmt).__name__}")
        self.graded[str(name)] = fmt

    def add_lif(self, name: str, params: dict[str, Any]) -> None:
        """Keep the scalar registers and errors of `lif_fixed_params` (per-neuron bias arrays summarised)."""
        missing = [k for k in ("du", "dv", "vth") if k not in params]
        if missing:
            raise ValueError(f"params for {name!r} lack {missing}; pass the dict from lif_fixed_params")
        entry = {k: (int(params[k]) if k in ("du", "dv", "vth") else float(params[k]))
                 for k in _LIF_SCALARS if k in params}
        exp = np.asarray(params.get("bias_exp", 0))
        entry["bias_exp_max"] = int(exp.max()) if exp.size else 0
        self.lif[str(name)] = entry

    def add_saturation(self, name: str, count: int) -> None:
        """Accumulate clipped-payload counts for stream `name`."""
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            raise ValueError(f"saturation count for {name!r} must be a non-negative int, got {count!r}")
        self.saturation[str(name)] = self.saturation.get(str(name), 0) + int(count)

    @property
    def total_saturated(self) -> int:
        return sum(self.saturation.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": {k: v.to_dict() for k, v in self.layers.items()},
            "graded": {k: v.to_dict() for k, v in self.graded.items()},
            "lif": {k: dict(v) for k, v in self.lif.items()},
            "saturation": dict(self.saturation),
            "total_saturated": self.total_saturated,
        }
