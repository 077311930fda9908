"""Graph validation, bias placement and delay matching (no Lava needed)."""

import nir
import numpy as np
import pytest
from respike_tests_helpers import conv2d_node

from respike_neuro.sim.demo_graphs import build_contract_graph
from respike_neuro.sim.plan import PlanError, build_plan


def test_latencies_and_delay_matching_on_contract_graph():
    # stage 1: identity block (needs a 2-step delay on the shortcut); stage 2: downsample block (none)
    plan = build_plan(build_contract_graph(channels=(4, 8), blocks=(2, 1), hybrid=True))
    u = plan.units
    assert u["stem.conv"].latency == 1
    assert u["layer1.0.conv2"].latency == 3 and u["layer1.0.out"].latency == 3
    # identity shortcut: stem output (latency 1) reaches the junction through a 2-step delay line
    delays = [k for k in u["layer1.0.out"].preds if u[k].kind == "delay"]
    assert len(delays) == 1 and u[delays[0]].delay == 2 and u[delays[0]].preds == ["stem.conv"]
    assert u["layer1.1.out"].latency == 5
    # downsample: pool (1) + 1x1 conv (1) equals the two convs of the main path: no delay needed
    assert all(u[p].kind == "conv" for p in u["layer2.0.out"].preds)
    assert plan.feeds == {"stage2_in": "stage1_out"}
    assert plan.port_latency("stage1_out") == 5 and plan.port_latency("stage2_in") == 5
    assert plan.port_latency("stage2_out") == 7 and plan.max_latency == 7
    for key, unit in u.items():  # every summing node gets all inputs at the same step
        if unit.preds:
            assert len({u[p].latency for p in unit.preds}) == 1, key


def test_conv_biases_are_carried_by_neurons():
    g = build_contract_graph(channels=(4,), blocks=(1,))
    plan = build_plan(g)
    b_stem = np.asarray(g.nodes["stem.conv"].bias)
    b_c1 = np.asarray(g.nodes["layer1.0.conv1"].bias)
    b_c2 = np.asarray(g.nodes["layer1.0.conv2"].bias)
    u = plan.units
    np.testing.assert_allclose(u["layer1.0.lif1"].bias, np.broadcast_to(b_stem[:, None, None], (4, 8, 8)))
    np.testing.assert_allclose(u["layer1.0.lif2"].bias, np.broadcast_to(b_c1[:, None, None], (4, 8, 8)))
    # junction: conv2 bias plus the identity-shortcut's stem bias
    np.testing.assert_allclose(
        u["layer1.0.out"].bias, np.broadcast_to((b_c2 + b_stem)[:, None, None], (4, 8, 8))
    )
    assert all(not np.any(x.bias) for x in u.values() if x.kind == "conv")


def test_conv_feeding_an_output_gets_a_bias_relay():
    g = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type={"input": np.array([2, 4, 4])}),
            "c": conv2d_node(np.ones((3, 2, 1, 1)), np.array([1.0, 2.0, 3.0])),
            "out": nir.Output(output_type={"output": np.array([3, 4, 4])}),
        },
        edges=[("in", "c"), ("c", "out")],
        metadata={"dt": 1.0},
    )
    plan = build_plan(g)
    assert plan.units["out"].preds == ["c#bias"]
    assert plan.units["c#bias"].bias[2, 0, 0] == 3.0


def test_unsupported_node_is_named():
    g = build_contract_graph(channels=(4,), blocks=(1,))
    g.nodes["layer1.0.lif2"] = nir.CubaLIF(
        tau_syn=np.ones(1), tau_mem=np.ones(1), r=np.ones(1), v_leak=np.zeros(1), v_threshold=np.ones(1)
    )
    with pytest.raises(PlanError, match=r"'layer1.0.lif2'.*CubaLIF"):
        build_plan(g)


def test_bad_lif_and_missing_dt_are_reported():
    g = build_contract_graph(channels=(4,), blocks=(1,))
    g.nodes["layer1.0.lif1"].v_leak[0, 0, 0] = 0.5
    with pytest.raises(PlanError, match="layer1.0.lif1.*v_leak"):
        build_plan(g)
    g = build_contract_graph(channels=(4,), blocks=(1,))
    del g.metadata["dt"]
    with pytest.raises(PlanError, match="dt"):
        build_plan(g)


def test_not_a_nir_file(tmp_path):
    p = tmp_path / "model.nir"
    p.write_text("not hdf5")
    with pytest.raises(PlanError, match="not a readable NIR file"):
        build_plan(p)
    with pytest.raises(PlanError, match="does not exist"):
        build_plan(tmp_path / "missing.nir")


def test_cycle_is_rejected():
    g = build_contract_graph(channels=(4,), blocks=(1,))
    g.edges.append(("layer1.0.out", "layer1.0.lif1"))
    with pytest.raises(PlanError, match="cycle"):
        build_plan(g)
