"""Loihi 2 arithmetic, written once: register widths and the LIF step in float and in fixed point (numpy).

Pure numpy (this module runs inside Lava's forked ProcessModels and must never import torch). Every
numpy user of the neuron calls these functions: the Lava ProcessModels (sim/procs/models.py) and the
numpy shadow executor (sim/executor.py), so the two agree spike for spike by construction. The torch
definitions are models/neuron.py (float, training) and torch_emulator.py (float and fixed, batched);
tests/sim/test_loihi.py runs the numpy and torch definitions side by side.

LIF (Lava's LIFReset, du = 1 in float / 4095 in fixed point for the project's current-free neuron):

    float:  u <- u * (1 - du) + a_in ;  v <- v * (1 - dv) + u + bias ;  spike if v > vth ;  v <- 0 on spike
    fixed:  u <- trunc0(u * (4096 - (du + 1)) / 2**12) + (a_in << 6)            (24-bit, wraps)
            v <- trunc0(v * (4096 - dv) / 2**12) + u + (bias_mant << bias_exp)  (24-bit, clipped)
            spike if v > (vth << 6) ;  v <- 0 on spike

where trunc0 rounds toward zero (Lava's PyLifResetModelBitAcc, lava/proc/lif/models.py, lava-nc 0.10).
"""

from __future__ import annotations

import numpy as np

from respike_neuro.sim.kernels import clamp_signed

# Loihi 2 widths as Lava's fixed-point models implement them (lava-nc 0.10).
MAX_WEIGHT_BITS = 8  # synaptic weight mantissa
# wider mantissas exist only for diagnosis in the numpy emulator ("what would more weight bits buy?")
EMULATOR_WEIGHT_BITS = 16
MAX_GRADED_BITS = 24  # graded spike payload
STATE_BITS = 24  # u and v
STATE_LIMIT = 1 << (STATE_BITS - 1)  # u wraps outside (-2**23, 2**23]; v clips to +-(2**23 - 1)
DECAY_SHIFT = 12  # du, dv are 12-bit: decay = value / 4096
DECAY_UNITY = 1 << DECAY_SHIFT
DS_OFFSET = 1  # Lava's bit-accurate model decays the current by du + 1 ...
DM_OFFSET = 0  # ... and the voltage by dv
VTH_SHIFT = 6  # threshold mantissa is MSB-aligned by << 6
ACT_SHIFT = 6  # synaptic input is MSB-aligned by << 6
VTH_MANT_MAX = (1 << 17) - 1  # 17-bit unsigned threshold mantissa
BIAS_MANT_MIN, BIAS_MANT_MAX = -(1 << 12), (1 << 12) - 1  # 13-bit signed bias mantissa
BIAS_EXP_MAX = 7  # 3-bit unsigned bias exponent
# u = a_in << 6 must stay inside 24 bits or it wraps: |a_in| < 2**17.
MAX_ABS_ACTIVATION = (1 << (STATE_BITS - 1 - ACT_SHIFT)) - 1
LIF_IN_BITS = STATE_BITS - ACT_SHIFT  # a_in << 6 must fit the 24-bit u: 17 magnitude bits + sign


# ------------------------------------------------------------------------------------------------ float
def lif_float_integrate(u: np.ndarray, v: np.ndarray, a_in, du, dv, bias) -> None:
    """The float LIF's sub-threshold update, in place on u and v (Lava's float model, same IEEE operations
    in the same order; in place because at ResNet stage sizes temporaries cost more than the update)."""
    np.multiply(u, 1 - du, out=u)
    u += a_in
    np.multiply(v, 1 - dv, out=v)
    v += u
    v += bias


def lif_fire(v: np.ndarray, vth) -> np.ndarray:
    """Spike where v > vth and reset those neurons to 0 in the same step (in place); returns the spikes."""
    spikes = v > vth
    v[spikes] = 0
    return spikes


def lif_float_step(u: np.ndarray, v: np.ndarray, a_in, du, dv, bias, vth) -> np.ndarray:
    """One float LIF step in place on u, v; returns the spikes."""
    lif_float_integrate(u, v, a_in, du, dv, bias)
    return lif_fire(v, vth)


# ------------------------------------------------------------------------------------------ fixed point
def decay_toward_zero(x: np.ndarray, keep: int, dtype=np.int64) -> np.ndarray:
    """Loihi's decay sign(x) * (|x| * keep >> 12) as `dtype`. |x| * keep < 2**36 and the division by 4096
    is a power of two, so the float64 product is exact and truncation gives the integer result."""
    return np.trunc(x * (keep / DECAY_UNITY)).astype(dtype)


def lif_fixed_step(
    u: np.ndarray, v: np.ndarray, a_in, du, dv, bias, vth, *, dtype=np.int64
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """One step of Lava's PyLifResetModelBitAcc, bit for bit: returns (u, v, spikes, saturated), the new
    state as fresh `dtype` arrays and the number of wrapped u plus clipped v entries.

    bias: the effective bias (bias_mant << bias_exp) or None for none. vth: the threshold mantissa.
    Cheaper than the stock model, same integers: a fully decaying current (du = 4095) skips its decay,
    and the wrap and clip run only when a value is out of range.
    """
    curr = np.left_shift(a_in, ACT_SHIFT).astype(dtype, copy=False)
    keep_u = DECAY_UNITY - (int(du) + DS_OFFSET)
    if keep_u:
        curr = decay_toward_zero(u, keep_u, dtype) + curr
    mx, wraps = STATE_LIMIT, 0
    if curr.size and (curr.max() > mx or curr.min() <= -mx):  # wraps modulo 2**24, as the stock model
        wraps = int(np.count_nonzero((curr > mx) | (curr <= -mx)))
        curr = np.where(curr > mx, curr - 2 * mx, np.where(curr <= -mx, curr + 2 * mx, curr))
    v = decay_toward_zero(v, DECAY_UNITY - (int(dv) + DM_OFFSET), dtype)
    v += curr
    if bias is not None:
        v += bias
    v, clips = clamp_signed(v, STATE_BITS)
    spikes = lif_fire(v, np.left_shift(vth, VTH_SHIFT))
    return curr, v, spikes, wraps + clips
