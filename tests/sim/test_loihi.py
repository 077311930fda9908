"""sim/loihi.py's LIF, the numpy definition, against Lava's own arithmetic and the torch definition."""

from __future__ import annotations

import numpy as np
import torch

from respike_neuro.models.neuron import lif_step
from respike_neuro.sim.loihi import STATE_LIMIT, lif_fixed_step, lif_float_step


def test_fixed_step_is_lavas_bit_accurate_model_with_saturation_counted():
    from lava.proc.lif.models import PyLifModelBitAcc

    rng = np.random.default_rng(3)
    n, du, dv, vth = 256, 1000, 777, 3000
    bias_mant = rng.integers(-4096, 4096, size=n).astype(np.int16)
    bias_exp = np.full(n, 3, np.int16)
    lava = PyLifModelBitAcc({})  # Lava's arithmetic, driven step by step
    lava.u, lava.v = np.zeros(n, np.int32), np.zeros(n, np.int32)
    lava.du, lava.dv, lava.vth = du, dv, vth
    lava.bias_mant, lava.bias_exp = bias_mant, bias_exp
    lava.scale_bias()
    lava.scale_threshold()
    bias = np.left_shift(bias_mant.astype(np.int64), bias_exp.astype(np.int64))
    u = v = np.zeros(n, np.int64)
    saturated = spikes = 0
    for t in range(30):
        a = rng.integers(-(1 << 15), 1 << 15, size=n)
        a[: n // 8] = rng.integers(1 << 17, 1 << 18, size=n // 8) * (1 if t % 2 else -1)  # u wraps
        u, v, s, c = lif_fixed_step(u, v, a, du, dv, bias, vth)
        lava.subthr_dynamics(a.astype(np.int32))
        s_lava = lava.spiking_activation()
        lava.reset_voltage(s_lava)
        np.testing.assert_array_equal(s, s_lava)
        np.testing.assert_array_equal(u, lava.u)
        np.testing.assert_array_equal(v, lava.v)
        saturated, spikes = saturated + c, spikes + int(s.sum())
    assert saturated > 0 and spikes > 0
    assert np.all(np.abs(v) < STATE_LIMIT)


def test_fixed_step_keeps_int32_state_for_lava_models():
    z = np.zeros(4, np.int32)
    u, v, s, c = lif_fixed_step(z, z, np.array([1, 2, 3, 4], np.int32), 4095, 0, None, 100, dtype=np.int32)
    assert u.dtype == v.dtype == np.int32 and u.tolist() == [64, 128, 192, 256] and c == 0
    assert s.tolist() == [False, False, False, False] and v.tolist() == [64, 128, 192, 256]


def test_float_step_is_the_training_neuron():
    """numpy (Lava side, du = 1, dv = 1 - beta) and torch (models/neuron.py) definitions, step by step."""
    beta, theta = 0.25, 4 / 3
    x = np.random.default_rng(0).normal(0.8, 0.9, size=(40, 64))
    u, v = np.zeros(64), np.zeros(64)
    vt = torch.zeros(64, dtype=torch.float64)
    for t in range(len(x)):
        s = lif_float_step(u, v, x[t], 1, 1.0 - beta, 0.0, theta)
        st, vt = lif_step(vt, torch.from_numpy(x[t]), beta, theta)
        np.testing.assert_array_equal(s, st.numpy().astype(bool))
        np.testing.assert_array_equal(v, vt.numpy())
