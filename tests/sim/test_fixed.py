"""Loihi 2 fixed point: agreement with the float run, bit-exactness with the emulator, saturation counts."""

import numpy as np
import pytest

from respike_neuro.sim.demo_graphs import build_contract_graph
from respike_neuro.sim.fixed_point import plan_fixed_point
from respike_neuro.sim.plan import PlanError, build_plan
from respike_neuro.sim.runtime import LavaSpikingBranch

T = 3


def test_fixed_vs_float_agreement_on_hybrid_graph(rng, children):
    g = build_contract_graph(channels=(4, 8), blocks=(1, 1), hybrid=True, seed=5)
    x = rng.normal(size=(2, T, 3, 16, 16)) * 1.5
    mix = rng.normal(size=(4, 4)) * 0.8

    def host(stage, t, feat):
        return 2.0 * np.tanh(np.einsum("oc,chw->ohw", mix, feat))

    with LavaSpikingBranch(g, mode="fixed") as fx, LavaSpikingBranch(g) as fl:
        rf, rl = fx.run_clip(x, host=host), fl.run_clip(x, host=host)
    agree = {k: float(np.mean(rf.spikes[k] == rl.spikes[k])) for k in rl.spikes}
    assert min(agree.values()) > 0.95, agree
    assert all(rl.spikes[k].mean() > 0.02 for k in rl.spikes)
    for port, out in rl.outputs.items():  # real-valued outputs track the float ones
        rel = np.abs(rf.outputs[port] - out).mean() / np.abs(out).mean()
        assert rel < 0.25, (port, rel)  # measured 0.05-0.12: spike flips, 8-bit weights
    q = rf.quantization
    assert q["bit_exact_with_emulator"], "Lava fixed-point run differs from the integer emulator"
    assert q["saturated_total"] == 0 and set(q["saturation"]) >= {
        "stem.conv",
        "layer1.0.lif1",
        "layer1.0.out",
    }
    assert children() == []


def test_formats_respect_loihi2_widths_and_saturation_is_counted():
    g = build_contract_graph(channels=(4,), blocks=(1,), input_hw=(8, 8), seed=2)
    plan = build_plan(g)
    fx = plan_fixed_point(plan, T)
    for k, q in fx.convs.items():
        assert np.abs(q.mantissa).max() <= 128 and q.mantissa.dtype.kind == "i", k
    for k, q in fx.lifs.items():
        assert 0 < q.vth < 2**17 and q.dv == 3072 and q.du == 4095, k
        # 4/3 is not a multiple of the threshold register's step: the deployed threshold moves, and says so
        p = q.params
        moved = (p["theta_effective"] - p["theta"]) / p["theta"]
        assert 0 < abs(moved) <= 0.5 / (q.vth - 0.5), k
        assert f"theta_eff={p['theta_effective']:.6g} ({moved:+.1e})" in fx.summary(), k
        assert np.abs(q.bias_mant).max() < 2**12 and 0 <= q.bias_exp.min() and q.bias_exp.max() <= 7
    # calibrate on tiny inputs, then drive 1000x harder: the emulator must report saturation
    small = plan_fixed_point(plan, T, calibration={"residual_in": np.full((T, 3, 8, 8), 1e-3)})
    from respike_neuro.sim.executor import run_plan

    run = run_plan(plan, {"residual_in": np.full((T, 3, 8, 8), 1.0)}, T, fixed=small)
    assert sum(run.saturation.values()) > 0


def test_fixed_mode_refuses_stock_conv_model():
    g = build_contract_graph(channels=(4,), blocks=(1,), input_hw=(8, 8))
    with pytest.raises(ValueError, match="weight_exp"):
        LavaSpikingBranch(g, mode="fixed", fast_models=False)


@pytest.mark.parametrize("mode", ["float", "fixed"])
def test_emulator_backend_equals_lava_without_processes(rng, children, mode):
    g = build_contract_graph(channels=(4, 8), blocks=(1, 1), hybrid=True, seed=5)
    x = rng.normal(size=(2, T, 3, 16, 16)) * 1.5

    def host(stage, t, feat):
        return np.tanh(feat)

    with LavaSpikingBranch(g, mode=mode) as lava:
        want = lava.run_clip(x, host=host)
    em = LavaSpikingBranch(g, mode=mode, backend="emulator")
    assert em.n_processes == 0
    got = em.run_clip(x, host=host)
    assert children() == []  # the emulator never forks
    for k, s in want.spikes.items():
        assert np.array_equal(got.spikes[k], s), k
    for port, out in want.outputs.items():
        np.testing.assert_allclose(got.outputs[port], out, rtol=0, atol=1e-12 if mode == "float" else 0)
    for port, inj in want.host_inputs.items():
        np.testing.assert_array_equal(got.host_inputs[port], inj)
    if mode == "fixed":
        assert got.quantization["engine"] == "emulator"
        assert got.quantization["saturation"] == want.quantization["saturation"]
    with pytest.raises(ValueError, match="returned shape"):  # host results are checked as for Lava
        em.run_clip(x, host=lambda s, t, f: f[:1])
    em.close()


def test_wider_weights_are_emulator_only():
    g = build_contract_graph(channels=(4,), blocks=(1,), input_hw=(8, 8), seed=2)
    em = LavaSpikingBranch(g, mode="fixed", backend="emulator", weight_bits=16)
    assert max(int(np.abs(q.mantissa).max()) for q in em.fixed.convs.values()) > 128
    with pytest.raises(ValueError, match="16-bit weights; Loihi 2"):
        LavaSpikingBranch(g, mode="fixed", weight_bits=16)


def test_pinned_formats_reproduce_the_calibrated_plan_without_calibrating():
    plan = build_plan(build_contract_graph(channels=(4, 8), blocks=(1, 1), hybrid=True, seed=5))
    cal = plan_fixed_point(plan, T, seed=1)
    pinned = plan_fixed_point(plan, T, frac_bits=dict(cal.frac_bits))
    assert pinned.frac_bits == cal.frac_bits and pinned.ranges == {} and "pinned" in pinned.calibration
    for k, q in cal.convs.items():
        assert np.array_equal(pinned.convs[k].mantissa, q.mantissa), k
        assert pinned.convs[k].weight_exp == q.weight_exp, k
    for k, q in cal.lifs.items():
        p = pinned.lifs[k]
        assert (p.vth, p.dv, p.du) == (q.vth, q.dv, q.du) and np.array_equal(p.bias_mant, q.bias_mant), k
    for k, b in cal.relay_bias.items():
        assert np.array_equal(pinned.relay_bias[k], b), k


def test_pinned_formats_that_do_not_fit_the_graph_are_named():
    plan = build_plan(build_contract_graph(channels=(4,), blocks=(1,), input_hw=(8, 8), seed=2))
    frac = dict(plan_fixed_point(plan, T).frac_bits)
    lif = plan.lif_keys[0]
    with pytest.raises(PlanError, match=r"missing \['stem.conv'\]"):
        plan_fixed_point(plan, T, frac_bits={k: v for k, v in frac.items() if k != "stem.conv"})
    with pytest.raises(PlanError, match=f"spike stream '{lif}'"):
        plan_fixed_point(plan, T, frac_bits={**frac, lif: 3})
    relay = next(k for k, u in plan.units.items() if u.kind == "relay")
    with pytest.raises(PlanError, match="must share a format"):
        plan_fixed_point(plan, T, frac_bits={**frac, relay: frac[relay] + 1})
