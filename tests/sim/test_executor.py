"""The numpy plan executor (calibration and fixed-point shadow) against the reference executor."""

import numpy as np

from respike_neuro.export.reference_executor import run_graph
from respike_neuro.sim.demo_graphs import build_contract_graph
from respike_neuro.sim.executor import run_plan
from respike_neuro.sim.plan import build_plan


def test_float_plan_run_equals_reference_and_resets_per_segment(rng):
    g = build_contract_graph(channels=(4, 8), blocks=(2, 1), seed=11)
    plan = build_plan(g)
    x = rng.normal(size=(6, 3, 16, 16)) * 1.5
    run = run_plan(plan, {"residual_in": x}, 3, sparse_threshold=0.5)
    for seg in range(2):
        ref = run_graph(g, {"residual_in": x[3 * seg : 3 * seg + 3]}, record=True)
        for k in plan.lif_keys:
            assert np.array_equal(run.spikes[k][3 * seg : 3 * seg + 3], ref.records[k] > 0), (seg, k)
        np.testing.assert_allclose(
            run.outputs["stage2_out"][3 * seg : 3 * seg + 3], ref.outputs["stage2_out"], rtol=1e-9, atol=1e-9
        )
    assert run.ranges["layer1.0.lif1#v"] > 0 and run.ranges["layer1.0.out"] > 0
