"""Lava float runs against the independent NIR reference executor (rung 3 -> rung 4), host loop, cleanup."""

import time

import numpy as np
import pytest

from respike_neuro.export.reference_executor import run_graph
from respike_neuro.sim.demo_graphs import build_contract_graph
from respike_neuro.sim.runtime import BackendUnavailable, LavaSpikingBranch

T = 3


def _assert_matches_reference(graph, res, inputs, sl=slice(None)):
    ref = run_graph(graph, inputs, record=True)
    for key, spikes in res.spikes.items():
        want = ref.records[key] > 0
        assert spikes[sl].shape == want.shape, key
        assert np.array_equal(spikes[sl], want), f"{key}: {np.mean(spikes[sl] != want):.3%} spikes differ"
    for port, out in res.outputs.items():
        want = ref.records[port]
        np.testing.assert_allclose(out[sl], want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    return ref


def test_float_equivalence_delay_matching_and_segment_reset(rng, children):
    # stage 1: two identity blocks (delay-matched shortcuts); stage 2: a downsample block
    g = build_contract_graph(channels=(4, 8), blocks=(2, 1), seed=3)
    x1 = rng.normal(size=(T, 3, 16, 16)) * 1.5
    x2 = np.zeros((T, 3, 16, 16))  # silent segment: any state leaking from x1 would show
    with LavaSpikingBranch(g) as br:
        assert br.port_latency["stage2_out"] == 7
        clip = br.run_clip(np.stack([x1, x2]))  # two segments pipelined back to back
        single = br.run_segment(x2)  # a later call on the same runtime
        assert clip.timings["steps"] == (2 + 3) * T and single.timings["steps"] == (1 + 3) * T
    _assert_matches_reference(g, clip, {"residual_in": x1}, slice(0, T))
    _assert_matches_reference(g, clip, {"residual_in": x2}, slice(T, 2 * T))
    _assert_matches_reference(g, single, {"residual_in": x2})
    rates = clip.spike_rates()
    assert all(0.0 < r < 1.0 for r in rates.values()), rates  # the comparison is not vacuous
    assert not np.array_equal(clip.outputs["stage2_out"][:T], clip.outputs["stage2_out"][T:])
    assert children() == []


def test_host_callback_loop_on_hybrid_graph(rng, children):
    g = build_contract_graph(channels=(4, 8), blocks=(1, 1), hybrid=True, seed=5)
    x = rng.normal(size=(T, 3, 16, 16)) * 1.5
    mix = rng.normal(size=(4, 4)) * 0.8
    calls = []

    def host(stage, t, feat):
        calls.append((stage, t))
        return 2.0 * np.tanh(np.einsum("oc,chw->ohw", mix, feat)) + 0.1 * t

    with LavaSpikingBranch(g) as br:
        res = br.run_segment(x, host=host)
    assert calls == [(1, t) for t in range(T)]
    # same host arithmetic on the reference's stage-1 output must give what was injected
    ref1 = run_graph(g, {"residual_in": x, "stage2_in": np.zeros((T, 4, 8, 8))}, record=True)
    want_in = np.stack([host(1, t, ref1.records["stage1_out"][t]) for t in range(T)])
    np.testing.assert_allclose(res.host_inputs["stage2_in"], want_in, rtol=1e-9, atol=1e-9)
    _assert_matches_reference(g, res, {"residual_in": x, "stage2_in": res.host_inputs["stage2_in"]})
    assert res.spike_rates()["layer2.0.lif1"] > 0
    assert children() == []


def test_stock_models_selectable_and_equal(rng, children):
    g = build_contract_graph(channels=(4,), blocks=(1,), input_hw=(8, 8), seed=7)
    x = rng.normal(size=(T, 3, 8, 8)) * 2
    with LavaSpikingBranch(g, fast_models=False) as stock, LavaSpikingBranch(g) as fast:
        from lava.proc.conv.models import PyConvModelFloat
        from lava.proc.lif.models import PyLifResetModelFloat

        assert {PyConvModelFloat, PyLifResetModelFloat} <= set(stock.net.model_map.values())
        a, b = stock.run_segment(x), fast.run_segment(x)
    for k in a.spikes:
        assert np.array_equal(a.spikes[k], b.spikes[k]), k
    np.testing.assert_allclose(a.outputs["stage1_out"], b.outputs["stage1_out"], rtol=1e-9, atol=1e-9)
    assert children() == []


@pytest.mark.parametrize("exc", [RuntimeError("host failed"), KeyboardInterrupt()])
def test_failure_in_host_callback_stops_lava(rng, children, exc):
    g = build_contract_graph(channels=(4, 8), blocks=(1, 1), hybrid=True)

    def host(stage, t, feat):
        if t == 1:
            raise exc
        return feat

    br = LavaSpikingBranch(g)
    with pytest.raises(type(exc)):
        br.run_segment(np.zeros((T, 3, 16, 16)), host=host)
    assert children() == []
    with pytest.raises(RuntimeError, match="stopped after an earlier failure"):
        br.run_segment(np.zeros((T, 3, 16, 16)), host=host)
    br.close()
    assert children() == []


def test_bad_host_output_and_stuck_step_stop_lava(children):
    g = build_contract_graph(channels=(4, 8), blocks=(1, 1), hybrid=True)
    with LavaSpikingBranch(g) as br, pytest.raises(ValueError, match=r"returned shape \(3, 8, 8\)"):
        br.run_segment(np.zeros((T, 3, 16, 16)), host=lambda s, t, f: f[:3])
    assert children() == []
    with LavaSpikingBranch(g, step_timeout=1e-6) as br, pytest.raises(TimeoutError, match="within"):
        br.run_segment(np.zeros((T, 3, 16, 16)), host=lambda s, t, f: f)
    assert children() == []


def test_started_but_never_run_closes_at_once(children):
    g = build_contract_graph(channels=(4, 8), blocks=(1, 1), hybrid=True)
    br = LavaSpikingBranch(g)
    br.start()
    br.start()  # idempotent
    assert children() != []
    t0 = time.perf_counter()
    br.close()
    assert time.perf_counter() - t0 < 5.0  # Lava's own stop() would block here
    assert children() == []
    with pytest.raises(RuntimeError, match="closed"):
        br.start()


def test_bad_inputs_are_rejected_before_lava_starts(children):
    g = build_contract_graph(channels=(4, 8), blocks=(1, 1), hybrid=True)
    with LavaSpikingBranch(g) as br:
        with pytest.raises(ValueError, match=r"'residual_in' has shape \(3, 3, 8, 8\)"):
            br.run_segment(np.zeros((T, 3, 8, 8)), host=lambda s, t, f: f)
        with pytest.raises(ValueError, match="no data for input port 'stage2_in'"):
            br.run_segment(np.zeros((T, 3, 16, 16)))
        with pytest.raises(TypeError, match="host must be callable"):
            br.run_segment(np.zeros((T, 3, 16, 16)), host=3)
        assert not br._started
    with pytest.raises(BackendUnavailable, match="not installed"):
        LavaSpikingBranch(g, backend="loihi2")
    with pytest.raises(ValueError, match="mode"):
        LavaSpikingBranch(g, mode="half")
    assert children() == []
