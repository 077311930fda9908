"""Loihi 2 fixed-point formats: weights, graded payloads, LIF registers, the quantisation report."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from respike_neuro.sim.quantization import (
    MAX_ABS_ACTIVATION,
    GradedFormat,
    QuantizationReport,
    WeightFormat,
    fit_graded,
    fit_weights,
    from_fixed,
    lif_fixed_params,
    max_abs_error,
    to_fixed,
)


def test_modules_do_not_import_torch():
    """Every module of the Lava side, and what it imports from outside it (Lava forks its ProcessModels;
    torch inside them hangs)."""
    import respike_neuro.sim

    root = Path(respike_neuro.sim.__file__).parent
    modules = sorted(
        "respike_neuro." + ".".join(p.relative_to(root.parent).with_suffix("").parts).replace(".__init__", "")
        for p in root.rglob("*.py")
    ) + ["respike_neuro.graph"]  # the graph helpers the Lava side shares with the host
    assert len(modules) >= 13 and "respike_neuro.sim.procs.models" in modules
    code = (
        f"import importlib, sys\nfor m in {modules!r}:\n    importlib.import_module(m)\n"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------------------------- weights
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_fit_weights_error_bound_and_tight_exponent(bits):
    rng = np.random.default_rng(bits)
    w = rng.normal(0, 0.05, size=(16, 8, 3, 3))
    fmt = fit_weights(w, bits)
    m_max, m_min = 2 ** (bits - 1) - 1, -(2 ** (bits - 1))
    assert fmt.mantissa.dtype == np.int32 and fmt.bits == bits
    assert fmt.mantissa.min() >= m_min and fmt.mantissa.max() <= m_max
    err = np.abs(w - fmt.dequantized())
    assert err.max() <= 2.0 ** (fmt.exponent - 1)  # round to nearest, no clipping
    assert err.max() <= np.abs(w).max() / m_max  # documented worst case
    assert max_abs_error(w, fmt) == pytest.approx(err.max())
    # the exponent is the smallest that fits: one step finer overflows the mantissa range
    finer = w / 2.0 ** (fmt.exponent - 1)
    assert finer.max() > m_max or finer.min() < m_min


def test_fit_weights_exact_values_round_trip():
    rng = np.random.default_rng(1)
    for e in (-12, -5, 0, 3):
        m = rng.integers(-128, 128, size=200)
        m[0], m[1] = -128, 127
        w = m * 2.0**e
        fmt = fit_weights(w)
        np.testing.assert_array_equal(fmt.dequantized(), w)
        assert fmt.exponent == e
        np.testing.assert_array_equal(fmt.mantissa, m)


def test_fit_weights_uses_full_negative_range_and_single_sign():
    w = np.array([-1.0, 0.25, 0.5])  # -1 = -128 * 2**-7 fits exactly at 8 bits
    fmt = fit_weights(w)
    assert fmt.mantissa.tolist() == [-128, 32, 64] and fmt.exponent == -7
    pos = fit_weights(np.array([0.0, 0.3, 1.0]))
    assert pos.mantissa.max() <= 127 and pos.mantissa.max() >= 64


def test_fit_weights_all_zero():
    fmt = fit_weights(np.zeros((4, 3)))
    assert fmt.exponent == 0 and not fmt.mantissa.any() and fmt.mantissa.shape == (4, 3)
    assert not fmt.dequantized().any()


def test_fit_weights_matches_lava_rule_on_integer_weights():
    """Same exponent rule as lava-nc's (torch-free) optimize_weight_bits for mixed-sign 8-bit weights."""
    from lava.utils.weightutils import SignMode, optimize_weight_bits

    rng = np.random.default_rng(2)
    for hi in (3, 40, 127):
        w = rng.integers(-hi, hi + 1, size=(32, 16))
        w[0, 0], w[0, 1] = -hi, hi
        lava = optimize_weight_bits(w.copy(), SignMode.MIXED)
        ours = fit_weights(w.astype(float)).lava_synapse()
        assert ours["weight_exp"] == lava.weight_exp
        np.testing.assert_array_equal(ours["weights"], lava.weights)


@pytest.mark.parametrize("bits", [4, 8])
def test_lava_synapse_survives_lava_clip_and_truncation(bits):
    from lava.utils.weightutils import SignMode, clip_weights, truncate_weights

    rng = np.random.default_rng(3)
    w = rng.normal(0, 1, size=(10, 20))
    fmt = fit_weights(w, bits)
    syn = fit_weights(w, bits).lava_synapse()
    kept = truncate_weights(
        clip_weights(syn["weights"], SignMode.MIXED, num_bits=8), SignMode.MIXED, syn["num_weight_bits"]
    )
    np.testing.assert_array_equal(kept, syn["weights"])
    np.testing.assert_array_equal(syn["weights"] * 2.0 ** syn["weight_exp"], fmt.dequantized())


def test_weight_bad_input():
    with pytest.raises(ValueError, match="w contains NaN"):
        fit_weights(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="bits"):
        fit_weights(np.ones(3), bits=17)
    with pytest.raises(ValueError, match="exceed Loihi 2's 8-bit"):  # 9..16: emulator diagnostics only
        fit_weights(np.ones(3), bits=9).lava_synapse()
    with pytest.raises(TypeError, match="bits"):
        fit_weights(np.ones(3), bits="8")
    with pytest.raises(ValueError, match="empty"):
        fit_weights(np.array([]))
    with pytest.raises(ValueError, match="mantissa must lie"):
        WeightFormat(np.array([200]), 0, 8)
    with pytest.raises(TypeError, match="integer"):
        WeightFormat(np.array([1.5]), 0, 8)


# ---------------------------------------------------------------------------------------- graded spikes
@pytest.mark.parametrize("max_abs,bits", [(1.0, 24), (3.7, 16), (1000.0, 8), (1e-3, 24)])
def test_fit_graded_is_the_finest_fitting_format(max_abs, bits):
    fmt = fit_graded(max_abs, bits=bits, headroom=2.0)
    assert fmt.bits == bits
    assert 2 * max_abs <= fmt.max_value
    assert 2 * max_abs > GradedFormat(fmt.frac_bits + 1, bits).max_value


def test_to_fixed_rounding_and_saturation():
    fmt = GradedFormat(frac_bits=20, bits=24)  # max value ~8
    rng = np.random.default_rng(4)
    x = rng.uniform(-7.9, 7.9, size=1000)
    q, sat = to_fixed(x, fmt)
    assert sat == 0 and q.dtype == np.int32
    assert np.abs(from_fixed(q, fmt) - x).max() <= fmt.step / 2
    q, sat = to_fixed(np.array([0.0, 1.5, 10.0, -10.0, 8.0]), fmt)
    assert sat == 3  # 8.0 * 2**20 = 2**23 is one past the largest payload
    assert q[2] == fmt.max_int and q[3] == fmt.min_int and q[4] == fmt.max_int
    assert q[1] == int(1.5 * 2**20)


def test_graded_bad_input():
    with pytest.raises(ValueError, match="max_abs"):
        fit_graded(0.0)
    with pytest.raises(ValueError, match="bits"):
        fit_graded(1.0, bits=25)
    with pytest.raises(ValueError, match="headroom"):
        fit_graded(1.0, headroom=0.5)
    with pytest.raises(TypeError, match="GradedFormat"):
        to_fixed(np.ones(2), 12)
    with pytest.raises(ValueError, match="values contains NaN"):
        to_fixed(np.array([np.inf]), GradedFormat(4))


# ------------------------------------------------------------------------------------------------- LIF
def lava_lif_step(u, v, a_in, du, dv, vth, bias_mant, bias_exp):
    """Literal integer re-statement of Lava 0.10 PyLifModelBitAcc (one step), for checking."""
    u, v, a_in = (np.asarray(x, dtype=np.int64) for x in (u, v, a_in))
    half = 2**23

    def decay(x, keep):  # x * keep / 4096 rounded toward zero
        p = x * keep
        return np.sign(p) * (np.abs(p) >> 12)

    u = decay(u, 4096 - (du + 1)) + (a_in << 6)
    u = np.where(u > half, u - 2 * half, u)
    u = np.where(u <= -half, u + 2 * half, u)
    bias = np.asarray(bias_mant, dtype=np.int64) << np.asarray(bias_exp, dtype=np.int64)
    v = np.clip(decay(v, 4096 - dv) + u + bias, -half + 1, half - 1)
    s = v > (vth << 6)
    v = np.where(s, 0, v)
    return u, v, s


def float_lif(currents, beta, theta):
    v = np.zeros(currents.shape[1:])
    out = []
    for i in currents:
        v = beta * v + i
        s = v > theta
        v = np.where(s, 0.0, v)
        out.append(s)
    return np.array(out)


def test_lif_reference_neuron_is_exact():
    p = lif_fixed_params(0.25, 4 / 3, input_scale=192)
    assert (p["du"], p["dv"], p["vth"]) == (4095, 3072, 256)
    assert p["beta_error"] == 0.0 and p["theta_error"] == 0.0
    q = lif_fixed_params(0.9, 1.0, input_scale=2**10)
    assert q["dv"] == 410 and q["beta_error"] <= 0.5 / 4096
    assert q["theta_error"] <= 0.5 / 2**10


def test_lif_params_match_lava_model_and_float_semantics():
    from lava.proc.lif.models import PyLifModelBitAcc

    beta, theta, scale = 0.25, 4 / 3, 192
    rng = np.random.default_rng(5)
    bias = rng.uniform(-0.3, 0.3, size=64)
    p = lif_fixed_params(beta, theta, scale, bias=bias)
    a = rng.integers(-150, 400, size=(40, 64))  # integer activations, I = a / scale

    lava = PyLifModelBitAcc({})  # Lava's own bit-accurate arithmetic, driven step by step
    lava.u, lava.v = np.zeros(64, np.int32), np.zeros(64, np.int32)
    lava.du, lava.dv, lava.vth = p["du"], p["dv"], p["vth"]
    lava.bias_mant, lava.bias_exp = p["bias_mant"].astype(np.int16), p["bias_exp"].astype(np.int16)
    lava.scale_bias()
    lava.scale_threshold()
    u = v = np.zeros(64, np.int64)
    spikes = []
    for a_t in a:
        u, v, s = lava_lif_step(u, v, a_t, p["du"], p["dv"], p["vth"], p["bias_mant"], p["bias_exp"])
        lava.subthr_dynamics(a_t.astype(np.int32))
        s_lava = lava.spiking_activation()
        lava.reset_voltage(s_lava)
        np.testing.assert_array_equal(s, s_lava)
        np.testing.assert_array_equal(v, lava.v)
        np.testing.assert_array_equal(u, lava.u)
        spikes.append(s)
    b_eff = np.ldexp(p["bias_mant"].astype(float), p["bias_exp"]) / p["v_scale"]
    ref = float_lif(a / scale + b_eff, beta, theta)
    assert np.asarray(spikes).sum() > 100  # the stream really spikes
    np.testing.assert_array_equal(np.asarray(spikes), ref)


def test_lif_current_limit_is_where_lava_wraps():
    kw = dict(du=4095, dv=3072, vth=100000, bias_mant=0, bias_exp=0)
    u, _, _ = lava_lif_step(0, 0, MAX_ABS_ACTIVATION, **kw)
    assert u == MAX_ABS_ACTIVATION * 64
    u, _, _ = lava_lif_step(0, 0, MAX_ABS_ACTIVATION + 2, **kw)
    assert u < 0  # wrapped
    p = lif_fixed_params(0.25, 4 / 3, input_scale=256)
    assert p["max_abs_current"] == pytest.approx(MAX_ABS_ACTIVATION / 256)


def test_lif_bad_input():
    with pytest.raises(ValueError, match="17-bit"):
        lif_fixed_params(0.25, 4 / 3, input_scale=2**17)
    with pytest.raises(ValueError, match="zero threshold"):
        lif_fixed_params(0.25, 0.001, input_scale=1)
    with pytest.raises(ValueError, match="beta"):
        lif_fixed_params(1.5, 1.0, 64)
    with pytest.raises(ValueError, match="input_scale"):
        lif_fixed_params(0.25, 1.0, -1)
    with pytest.raises(ValueError, match="bias"):
        lif_fixed_params(0.25, 1.0, 2**10, bias=np.array([1e4]))


# ---------------------------------------------------------------------------------------------- report
def test_quantization_report_round_trips_through_json():
    rep = QuantizationReport()
    w = np.random.default_rng(6).normal(size=(8, 4, 3, 3))
    fmt = fit_weights(w)
    entry = rep.add_weights("layer1.0.conv1", w, fmt)
    assert entry.max_abs_weight_error == pytest.approx(max_abs_error(w, fmt))
    rep.add_graded("layer1.0.out", fit_graded(5.0))
    rep.add_lif("layer1.0.lif1", lif_fixed_params(0.25, 4 / 3, 192, bias=np.array([0.1, -0.2])))
    rep.add_saturation("layer1.0.out", 3)
    rep.add_saturation("layer1.0.out", 2)
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["layers"]["layer1.0.conv1"]["weight_exponent"] == fmt.exponent
    assert d["graded"]["layer1.0.out"]["frac_bits"] == fit_graded(5.0).frac_bits
    assert d["lif"]["layer1.0.lif1"]["vth"] == 256
    assert d["saturation"]["layer1.0.out"] == 5 and d["total_saturated"] == 5
    with pytest.raises(ValueError, match="non-negative"):
        rep.add_saturation("x", -1)
    with pytest.raises(ValueError, match="lif_fixed_params"):
        rep.add_lif("x", {"dv": 1})
