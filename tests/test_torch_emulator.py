"""torch_emulator against the numpy emulator (sim/executor.run_plan): same spikes, same integers.

No Lava is involved on either side, so this also runs on GPU machines without Lava (scripts/gpu_check.sh).
"""

import numpy as np
import pytest
import torch

from respike_neuro.sim.demo_graphs import build_contract_graph
from respike_neuro.sim.executor import run_plan
from respike_neuro.sim.fixed_point import plan_fixed_point
from respike_neuro.sim.plan import build_plan
from respike_neuro.torch_emulator import TorchPlanEmulator, run_segments

T = 3
NO_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
DEVICES = ["cpu", pytest.param("cuda", marks=NO_GPU)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["fixed", "float"])
def test_equals_run_plan_with_the_host_in_the_loop(mode, device):
    rng = np.random.default_rng(3)
    plan = build_plan(build_contract_graph(channels=(4, 8), blocks=(2, 1), hybrid=True, seed=5))
    x = rng.normal(size=(4, T, 3, 16, 16)) * 1.5  # 4 segments
    mix = rng.normal(size=(4, 4)) * 0.8
    fixed = plan_fixed_point(plan, T) if mode == "fixed" else None

    def host_np(stage, t, feat):  # one step, as run_plan asks
        return 2.0 * np.tanh(np.einsum("oc,chw->ohw", mix, feat))

    def host_torch(stage, feat):  # all steps at once (S*T, C, h, w), as run_segments asks
        return 2.0 * torch.tanh(torch.einsum("oc,nchw->nohw", torch.as_tensor(mix, device=feat.device), feat))

    want = run_plan(plan, {"residual_in": x.reshape(-1, 3, 16, 16)}, T, host=host_np, fixed=fixed)
    got, timings = run_segments(
        TorchPlanEmulator(plan, T, fixed, device=device), torch.as_tensor(x, device=device), host_torch
    )
    assert got["spikes"].keys() == want.spikes.keys()
    for k, s in want.spikes.items():
        assert np.array_equal(got["spikes"][k], s), f"{k}: {int((got['spikes'][k] != s).sum())} spikes differ"
        assert 0.02 < s.mean() < 0.9, k  # not vacuous
    for k, v in want.outputs.items():
        if mode == "fixed":
            assert np.array_equal(got["outputs"][k], v), k
        else:
            np.testing.assert_allclose(got["outputs"][k], v, rtol=0, atol=1e-11)
    for k, v in want.host_inputs.items():
        np.testing.assert_allclose(got["host_inputs"][k], v, rtol=0, atol=1e-11)
    if mode == "fixed":
        assert got["saturation"] == want.saturation
    assert timings["steps"] == 4 * T and timings["host_callback_s"] > 0


def test_saturation_is_counted_like_run_plan():
    plan = build_plan(build_contract_graph(channels=(4,), blocks=(1,), input_hw=(8, 8), seed=2))
    tiny = plan_fixed_point(plan, T, calibration={"residual_in": np.full((T, 3, 8, 8), 1e-3)})
    loud = np.full((1, T, 3, 8, 8), 1.0)  # 1000x the calibrated range
    want = run_plan(plan, {"residual_in": loud[0]}, T, fixed=tiny)
    got, _ = run_segments(TorchPlanEmulator(plan, T, tiny), torch.as_tensor(loud))
    assert got["saturation"] == want.saturation and sum(got["saturation"].values()) > 0
    for k, s in want.spikes.items():
        assert np.array_equal(got["spikes"][k], s), k


def test_bad_input_shape_is_named():
    plan = build_plan(build_contract_graph(channels=(4,), blocks=(1,), input_hw=(8, 8), seed=2))
    with pytest.raises(ValueError, match=r"input 'residual_in': expected \(T=3, S, \*\(3, 8, 8\)\)"):
        TorchPlanEmulator(plan, T).run({"residual_in": torch.zeros(T, 1, 3, 16, 16)})
