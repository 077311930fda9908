"""Plan -> Lava processes: what the Lava Processes themselves carry (for any backend that reads them)."""

import numpy as np
from lava.utils.weightutils import SignMode, truncate_weights

from respike_neuro.sim.demo_graphs import build_contract_graph
from respike_neuro.sim.fixed_point import plan_fixed_point
from respike_neuro.sim.kernels import lava_conv_weight
from respike_neuro.sim.mapping import build_network
from respike_neuro.sim.plan import build_plan

T = 3


def test_fixed_conv_weights_follow_lavas_synapse_convention():
    """A backend that drops (9 - num_weight_bits) LSBs, as Lava's bit-accurate synapses do, must see
    exactly the plan's weights: mantissa * 2**shift."""
    plan = build_plan(build_contract_graph(channels=(4,), blocks=(1,), input_hw=(8, 8), seed=2))
    for bits in (8, 3):
        fixed = plan_fixed_point(plan, T, weight_bits=bits)
        net = build_network(plan, timesteps=T, mode="fixed", fixed=fixed, record_spikes=False)
        for key, q in fixed.convs.items():
            proc = net.procs[key]
            w, e = proc.weight.init, int(np.asarray(proc.weight_exp.init).item())
            assert int(np.asarray(proc.num_weight_bits.init).item()) == q.bits
            np.testing.assert_array_equal(truncate_weights(w, SignMode.MIXED, q.bits), w)
            np.testing.assert_array_equal(
                w * 2.0**e, lava_conv_weight(q.mantissa) * 2.0**q.weight_exp, err_msg=f"{key} at {bits} bits"
            )
