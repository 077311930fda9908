"""The reference NIR executor against hand-computed traces and against PyTorch's conv/pool."""

import time

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from respike_neuro.export.reference_executor import ExecutionResult, run_graph, topological_order

RNG = np.random.default_rng(1234)


def arr(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float64)


def chain(*nodes: tuple[str, nir.NIRNode], metadata: dict | None = None, type_check: bool = True):
    """in -> nodes... -> out, Input/Output shapes given by the first and last node."""
    keys = [k for k, _ in nodes]
    graph_nodes = dict(nodes)
    edges = list(zip(keys[:-1], keys[1:]))
    return nir.NIRGraph(graph_nodes, edges, metadata=metadata or {}, type_check=type_check)


def conv_graph(shape, weight, bias, stride, padding, dilation, groups) -> nir.NIRGraph:
    conv = nir.Conv2d(None, weight, stride, padding, dilation, groups, bias)
    return chain(("in", nir.Input(np.array(shape))), ("conv", conv), ("out", nir.Output(None)))


# ----------------------------------------------------------------------------- neurons by hand

# dt = 1e-3, tau = 2e-3 -> dt/tau = 0.5 exactly; r = 2, v_leak = 1.
# v <- v + 0.5 * ((1 - v) + 2 I)
CURRENT = arr(1, 1, 0, 3, 0, 2, 0)
# LI (no reset): 1.5, 2.25, 1.625, 4.3125, 2.65625, 3.828125, 2.4140625
LI_TRACE = arr(1.5, 2.25, 1.625, 4.3125, 2.65625, 3.828125, 2.4140625)
# LIF, v_threshold 2.5, v_reset -1: 1.5, 2.25, 1.625, 4.3125 -> spike, v = -1;
# -1 + 0.5 * (2 + 0) = 0; 0 + 0.5 * (1 + 4) = 2.5 (not > 2.5, no spike); 2.5 + 0.5 * (1 - 2.5) = 1.75
LIF_SPIKES = arr(0, 0, 0, 1, 0, 0, 0)


def neuron_graph(neuron: nir.NIRNode, metadata: dict | None = None) -> nir.NIRGraph:
    return chain(
        ("in", nir.Input(np.array([1]))), ("n", neuron), ("out", nir.Output(np.array([1]))), metadata=metadata
    )


def lif(v_reset: float, v_leak: float = 1.0, threshold: float = 2.5) -> nir.LIF:
    return nir.LIF(
        tau=arr(2e-3), r=arr(2.0), v_leak=arr(v_leak), v_threshold=arr(threshold), v_reset=arr(v_reset)
    )


def test_lif_hand_trace_with_leak_reset_and_r_and_dt_from_metadata():
    res = run_graph(neuron_graph(lif(v_reset=-1.0), {"dt": 1e-3}), {"in": CURRENT[:, None]})
    assert isinstance(res, ExecutionResult)
    assert res.dt == 1e-3 and res.timesteps == 7 and res.batch_size is None
    np.testing.assert_array_equal(res.outputs["out"][:, 0], LIF_SPIKES)


def test_lif_v_reset_and_v_leak_change_the_spikes():
    # With v_reset = 0 instead of -1: after the spike v = 0 + 0.5 * (1 - 0) = 0.5, then
    # 0.5 + 0.5 * (0.5 + 4) = 2.75 > 2.5 -> a second spike at t = 5.
    res = run_graph(neuron_graph(lif(v_reset=0.0)), {"in": CURRENT[:, None]}, dt=1e-3)
    np.testing.assert_array_equal(res.outputs["out"][:, 0], arr(0, 0, 0, 1, 0, 1, 0))
    # With v_leak = 0: 1.0, 1.5, 0.75, 3.375 -> spike, -1 + 0.5*(1) = -0.5, -0.5 + 0.5*(0.5 + 4) = 1.75, 0.875
    no_leak = neuron_graph(lif(v_reset=-1.0, v_leak=0.0, threshold=1.6))
    res = run_graph(no_leak, {"in": CURRENT[:, None]}, dt=1e-3)
    np.testing.assert_array_equal(res.outputs["out"][:, 0], arr(0, 0, 0, 1, 0, 1, 0))


def test_li_hand_trace_and_v_init_leak():
    li = nir.LI(tau=arr(2e-3), r=arr(2.0), v_leak=arr(1.0))
    res = run_graph(neuron_graph(li, {"dt": 1e-3}), {"in": CURRENT[:, None]})
    np.testing.assert_array_equal(res.outputs["out"][:, 0], LI_TRACE)
    # starting at rest (v = v_leak) with no input, the membrane stays at v_leak; from 0 it relaxes
    rest = run_graph(neuron_graph(li, {"dt": 1e-3}), {"in": np.zeros((3, 1))}, v_init="leak")
    np.testing.assert_array_equal(rest.outputs["out"][:, 0], arr(1, 1, 1))
    relax = run_graph(neuron_graph(li, {"dt": 1e-3}), {"in": np.zeros((3, 1))})
    np.testing.assert_array_equal(relax.outputs["out"][:, 0], arr(0.5, 0.75, 0.875))


def test_if_and_integrator_hand_trace():
    # dt = 0.5, r = 2 -> v <- v + I
    current = arr(0.75, 0.5, 1.0, 0.25, 2.0)[:, None]
    integ = run_graph(neuron_graph(nir.I(r=arr(2.0))), {"in": current}, dt=0.5)
    np.testing.assert_array_equal(integ.outputs["out"][:, 0], arr(0.75, 1.25, 2.25, 2.5, 4.5))
    # IF: threshold 1.0, reset 0.25: 0.75; 1.25 -> spike, 0.25; 1.25 -> spike, 0.25; 0.5; 2.5 -> spike
    neuron = nir.IF(r=arr(2.0), v_threshold=arr(1.0), v_reset=arr(0.25))
    res = run_graph(neuron_graph(neuron), {"in": current}, dt=0.5)
    np.testing.assert_array_equal(res.outputs["out"][:, 0], arr(0, 1, 1, 0, 1))


def test_contract_lif_equals_discrete_recurrence():
    # docs/nir-contract.md: tau = dt/(1-beta), r = 1/(1-beta) expresses v = beta v + I, reset to 0
    beta, theta, dt, shape = 0.25, 4.0 / 3.0, 1e-4, (4, 5, 6)
    neuron = nir.LIF(
        tau=np.full(shape, dt / (1 - beta)),
        r=np.full(shape, 1 / (1 - beta)),
        v_leak=np.zeros(shape),
        v_threshold=np.full(shape, theta),
        v_reset=np.zeros(shape),
    )
    graph = chain(
        ("in", nir.Input(np.array(shape))),
        ("lif", neuron),
        ("out", nir.Output(np.array(shape))),
        metadata={"dt": dt},
    )
    current = RNG.normal(0.6, 0.8, size=(2, 12, *shape))
    v, expected = np.zeros((2, *shape)), []
    for t in range(12):
        v = beta * v + current[:, t]
        expected.append(v > theta)
        v = np.where(v > theta, 0.0, v)
    spikes = run_graph(graph, {"in": current}).outputs["out"]
    assert spikes.shape == (2, 12, *shape)
    np.testing.assert_array_equal(spikes, np.stack(expected, axis=1))
    assert 0.05 < spikes.mean() < 0.6  # the comparison is not vacuous


# ----------------------------------------------------------------------------- conv / pool vs torch


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize(
    "c_in, c_out, k, stride, padding, dilation, groups",
    [
        (3, 8, (3, 3), 1, 1, 1, 1),
        (4, 6, (3, 3), 2, 1, 1, 2),
        (6, 6, (3, 2), (2, 1), (0, 2), (1, 2), 3),
        (4, 8, (1, 1), 2, 0, 1, 1),
        (4, 4, (4, 4), 1, "same", 1, 4),
        (3, 5, (3, 3), 1, "valid", 2, 1),
    ],
)
def test_conv2d_matches_torch(c_in, c_out, k, stride, padding, dilation, groups):
    h, w = 9, 11
    weight = RNG.standard_normal((c_out, c_in // groups, *k))
    bias = RNG.standard_normal(c_out)
    x = RNG.standard_normal((2, 3, c_in, h, w))  # (B, T, C, H, W)
    graph = conv_graph((c_in, h, w), weight, bias, stride, padding, dilation, groups)
    # nir 1.0.8 infers a non-square kernel's output width from kH: skip the declared-shape check there
    res = run_graph(graph, {"in": x}, check_types=k[0] == k[1])
    xt, wt, bt = torch.from_numpy(x.reshape(6, c_in, h, w)), torch.from_numpy(weight), torch.from_numpy(bias)
    ref = F.conv2d(xt, wt, bt, stride=stride, padding=padding, dilation=dilation, groups=groups).numpy()
    out = res.outputs["out"]
    assert out.shape == (2, 3, *ref.shape[1:])
    np.testing.assert_allclose(out.reshape(ref.shape), ref, rtol=1e-12, atol=1e-12)


def test_conv1d_matches_torch():
    weight, bias = RNG.standard_normal((6, 2, 3)), RNG.standard_normal(6)
    conv = nir.Conv1d(None, weight, 2, 1, 2, 2, bias)
    graph = chain(("in", nir.Input(np.array([4, 13]))), ("conv", conv), ("out", nir.Output(None)))
    x = RNG.standard_normal((5, 4, 13))
    ref = F.conv1d(
        torch.from_numpy(x),
        torch.from_numpy(weight),
        torch.from_numpy(bias),
        stride=2,
        padding=1,
        dilation=2,
        groups=2,
    ).numpy()
    np.testing.assert_allclose(run_graph(graph, {"in": x}).outputs["out"], ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel, stride, padding", [((2, 2), (2, 2), (0, 0)), ((3, 2), (2, 1), (1, 1))])
def test_pooling_matches_torch(kernel, stride, padding):
    x = RNG.standard_normal((4, 3, 7, 8))
    xt = torch.from_numpy(x)
    for node_type, divisor in ((nir.AvgPool2d, None), (nir.SumPool2d, 1)):
        node = node_type(np.array(kernel), np.array(stride), np.array(padding))
        graph = chain(("in", nir.Input(np.array([3, 7, 8]))), ("pool", node), ("out", nir.Output(None)))
        ref = F.avg_pool2d(xt, kernel, stride, padding, count_include_pad=True, divisor_override=divisor)
        ref = ref.numpy()
        np.testing.assert_allclose(run_graph(graph, {"in": x}).outputs["out"], ref, rtol=1e-12, atol=1e-12)


def test_conv_speed_64ch_56x56_three_steps():
    weight, bias = RNG.standard_normal((64, 64, 3, 3)), RNG.standard_normal(64)
    graph = conv_graph((64, 56, 56), weight, bias, 1, 1, 1, 1)
    x = (RNG.random((3, 64, 56, 56)) < 0.2).astype(np.float64)
    run_graph(graph, {"in": x})  # warm-up (BLAS threads, page faults)
    start = time.perf_counter()
    run_graph(graph, {"in": x})
    assert time.perf_counter() - start < 1.0


# ----------------------------------------------------------------------------- graph structure


def test_skip_connection_sums_two_edges():
    # in -> conv -> lif -> conv2 -> junction <- in (identity shortcut); junction -> out
    c, h, w = 2, 5, 5
    w1, b1 = RNG.standard_normal((c, c, 3, 3)), RNG.standard_normal(c)
    w2, b2 = RNG.standard_normal((c, c, 3, 3)), RNG.standard_normal(c)
    shape = (c, h, w)
    nodes = {
        "in": nir.Input(np.array(shape)),
        "conv1": nir.Conv2d((h, w), w1, 1, 1, 1, 1, b1),
        "lif": nir.LIF(
            tau=np.full(shape, 2.0),
            r=np.full(shape, 2.0),
            v_leak=np.zeros(shape),
            v_threshold=np.full(shape, 0.5),
            v_reset=np.zeros(shape),
        ),
        "conv2": nir.Conv2d((h, w), w2, 1, 1, 1, 1, b2),
        "junction": nir.Scale(np.ones(shape)),
        "out": nir.Output(np.array(shape)),
    }
    edges = [
        ("in", "conv1"),
        ("conv1", "lif"),
        ("lif", "conv2"),
        ("conv2", "junction"),
        ("in", "junction"),
        ("junction", "out"),
    ]
    graph = nir.NIRGraph(nodes, edges, metadata={"dt": 1.0})
    x = RNG.standard_normal((4, *shape))
    res = run_graph(graph, {"in": x}, record=True)

    xt = torch.from_numpy(x)
    i1 = F.conv2d(xt, torch.from_numpy(w1), torch.from_numpy(b1), padding=1)
    v, spikes = torch.zeros(shape, dtype=torch.float64), []
    for t in range(4):  # dt/tau = 0.5, r = 2: v <- 0.5 v + I
        v = 0.5 * v + i1[t]
        spikes.append((v > 0.5).double())
        v = torch.where(v > 0.5, 0.0, v)
    s = torch.stack(spikes)
    expected = F.conv2d(s, torch.from_numpy(w2), torch.from_numpy(b2), padding=1) + xt
    np.testing.assert_array_equal(res.records["lif"], s.numpy())
    assert 0 < s.mean() < 1
    np.testing.assert_allclose(res.outputs["out"], expected.numpy(), rtol=1e-12, atol=1e-12)
    assert set(res.records) == set(nodes) and res.records["conv2"].shape == (4, *shape)


def test_write_read_roundtrip_then_execute(tmp_path):
    shape, s = (2, 6, 6), (4, 3, 3)
    nodes = {
        "residual_in": nir.Input(np.array(shape)),
        "stem.conv": nir.Conv2d(None, RNG.standard_normal((4, 2, 3, 3)), 2, 1, 1, 1, RNG.standard_normal(4)),
        "lif": nir.LIF(
            tau=np.full(s, 4e-3 / 3),
            r=np.full(s, 4 / 3),
            v_leak=np.zeros(s),
            v_threshold=np.full(s, 4 / 3),
            v_reset=np.zeros(s),
        ),
        "pool": nir.AvgPool2d(np.array([2, 2]), np.array([1, 1]), np.array([0, 0])),
        "flat": nir.Flatten(input_type=None, start_dim=0, end_dim=-1),
        "fc": nir.Affine(RNG.standard_normal((3, 16)), RNG.standard_normal(3)),
        "stage_out": nir.Output(None),
    }
    keys = list(nodes)
    graph = nir.NIRGraph(nodes, list(zip(keys[:-1], keys[1:])), metadata={"dt": 1e-3})
    path = tmp_path / "g.nir"
    nir.write(path, graph)
    loaded = nir.read(path)
    x = RNG.normal(0.5, 1.0, size=(3, 5, *shape))
    before = run_graph(graph, {"residual_in": x}, record=True)
    after = run_graph(loaded, {"residual_in": x}, record=True)
    assert after.dt == 1e-3 and after.outputs["stage_out"].shape == (3, 5, 3)
    for key in nodes:
        np.testing.assert_array_equal(after.records[key], before.records[key])
    assert 0 < after.records["lif"].mean() < 1


def test_flatten_linear_scale_threshold_delay():
    x = RNG.standard_normal((6, 2, 3, 4))
    lin_w = RNG.standard_normal((5, 24))
    scale = RNG.standard_normal(5)
    nodes = [
        ("in", nir.Input(np.array([2, 3, 4]))),
        ("flat", nir.Flatten(input_type=None, start_dim=1, end_dim=2)),  # no batch: (2, 3, 4) -> (2, 12)
        ("flat2", nir.Flatten(input_type=None, start_dim=0, end_dim=-1)),
        ("lin", nir.Linear(lin_w)),
        ("scale", nir.Scale(scale)),
        ("thr", nir.Threshold(np.full(5, 0.3))),
        ("delay", nir.Delay(arr(0, 2e-3, 1e-3, 0, 3e-3))),
        ("out", nir.Output(np.array([5]))),
    ]
    res = run_graph(chain(*nodes), {"in": x}, dt=1e-3, record=True)
    assert res.records["flat"].shape == (6, 2, 12)
    z = (x.reshape(6, 24) @ lin_w.T * scale) > 0.3
    np.testing.assert_array_equal(res.records["thr"], z)
    expected = np.zeros_like(z)
    for j, d in enumerate([0, 2, 1, 0, 3]):
        expected[d:, j] = z[: 6 - d, j]
    np.testing.assert_array_equal(res.outputs["out"], expected)


def test_batched_equals_per_sample_and_state_resets_per_call():
    graph = small_lif_graph()
    x = RNG.normal(0.5, 1.0, size=(3, 4, 3, 5, 5))
    batched = run_graph(graph, {"in": x}).outputs["out"]
    for b in range(3):
        single = run_graph(graph, {"in": x[b]}).outputs["out"]
        np.testing.assert_array_equal(batched[b], single)
    # a second call starts from reset state: same input, same output
    np.testing.assert_array_equal(run_graph(graph, {"in": x}).outputs["out"], batched)
    f32 = run_graph(graph, {"in": x}, dtype=np.float32).outputs["out"]
    assert f32.dtype == np.float32 and np.abs(f32 - batched).max() < 1e-4


def small_lif_graph() -> nir.NIRGraph:
    shape = (4, 5, 5)
    nodes = {
        "in": nir.Input(np.array([3, 5, 5])),
        "conv": nir.Conv2d(None, RNG.standard_normal((4, 3, 3, 3)), 1, 1, 1, 1, np.zeros(4)),
        "lif": nir.LIF(
            tau=np.full(shape, 2.0),
            r=np.ones(shape),
            v_leak=np.zeros(shape),
            v_threshold=np.ones(shape),
            v_reset=np.zeros(shape),
        ),
        "out": nir.Output(None),
    }
    return nir.NIRGraph(nodes, [("in", "conv"), ("conv", "lif"), ("lif", "out")], metadata={"dt": 1.0})


def test_two_input_ports_are_summed_and_must_share_time_axis():
    shape = np.array([3, 2, 2])
    nodes = {"residual_in": nir.Input(shape), "stage2_in": nir.Input(shape), "out": nir.Output(shape)}
    graph = nir.NIRGraph(nodes, [("residual_in", "out"), ("stage2_in", "out")])
    a, b = RNG.standard_normal((2, 4, 3, 2, 2)), RNG.standard_normal((2, 4, 3, 2, 2))
    np.testing.assert_array_equal(run_graph(graph, {"residual_in": a, "stage2_in": b}).outputs["out"], a + b)
    with pytest.raises(ValueError, match="input 'stage2_in' has leading axes \\(4,\\)"):
        run_graph(graph, {"residual_in": a, "stage2_in": b[0]})


# ----------------------------------------------------------------------------- errors


def test_declared_port_shape_mismatch_is_caught():
    # an exporter bug: the Output port claims (2, 2, 2) but the conv delivers (2, 3, 3)
    nodes = {
        "in": nir.Input(np.array([1, 3, 3])),
        "conv": nir.Conv2d(None, np.ones((2, 1, 1, 1)), 1, 0, 1, 1, np.zeros(2)),
        "stage1_out": nir.Output(np.array([2, 2, 2])),
    }
    graph = nir.NIRGraph(nodes, [("in", "conv"), ("conv", "stage1_out")], type_check=False)
    x = np.ones((2, 1, 3, 3))
    with pytest.raises(ValueError, match="'stage1_out' \\(Output\\) receives shape \\(2, 3, 3\\)"):
        run_graph(graph, {"in": x})
    assert run_graph(graph, {"in": x}, check_types=False).outputs["stage1_out"].shape == (2, 2, 3, 3)


def test_missing_and_unknown_inputs_are_named():
    graph = conv_graph((1, 4, 4), np.ones((1, 1, 1, 1)), np.zeros(1), 1, 0, 1, 1)
    with pytest.raises(ValueError, match="no input given for Input node.*'in'"):
        run_graph(graph, {})
    with pytest.raises(ValueError, match="unknown port.*'stage2_in'"):
        run_graph(graph, {"in": np.zeros((2, 1, 4, 4)), "stage2_in": np.zeros((2, 1, 4, 4))})
    with pytest.raises(ValueError, match="input 'in' has shape \\(2, 1, 4, 5\\)"):
        run_graph(graph, {"in": np.zeros((2, 1, 4, 5))})
    with pytest.raises(TypeError, match="input 'in' must be real-valued"):
        run_graph(graph, {"in": np.zeros((2, 1, 4, 4), dtype=complex)})


def test_unsupported_nodes_are_named():
    shape = np.array([3])
    cuba = nir.CubaLIF(
        tau_syn=np.ones(3), tau_mem=np.ones(3), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.ones(3)
    )
    graph = chain(("in", nir.Input(shape)), ("syn", cuba), ("out", nir.Output(shape)))
    with pytest.raises(NotImplementedError, match="'syn' \\(CubaLIF\\)"):
        run_graph(graph, {"in": np.zeros((2, 3))}, dt=1.0)
    inner = chain(("i", nir.Input(shape)), ("s", nir.Scale(np.ones(3))), ("o", nir.Output(shape)))
    nested = nir.NIRGraph(
        {"in": nir.Input(shape), "sub": inner, "out": nir.Output(shape)},
        [("in", "sub"), ("sub", "out")],
        type_check=False,
    )
    with pytest.raises(NotImplementedError, match="'sub' \\(NIRGraph\\)"):
        run_graph(nested, {"in": np.zeros((2, 3))})


def test_cycle_is_rejected_and_named():
    shape = np.array([2])
    nodes = {
        "in": nir.Input(shape),
        "a": nir.Scale(np.ones(2)),
        "b": nir.Scale(np.ones(2)),
        "out": nir.Output(shape),
    }
    edges = [("in", "a"), ("a", "b"), ("b", "a"), ("b", "out")]
    graph = nir.NIRGraph(nodes, edges, type_check=False)
    with pytest.raises(ValueError, match="cycle \\((a -> b -> a|b -> a -> b)\\)"):
        run_graph(graph, {"in": np.zeros((1, 2))})
    assert topological_order(["x", "y", "z"], [("x", "z"), ("y", "z")]) == ["x", "y", "z"]


def test_dt_required_when_a_node_needs_it():
    with pytest.raises(ValueError, match="'n' \\(LIF\\).*dt is required"):
        run_graph(neuron_graph(lif(v_reset=0.0)), {"in": np.zeros((2, 1))})
    with pytest.raises(ValueError, match="dt must be a positive"):
        run_graph(neuron_graph(lif(v_reset=0.0)), {"in": np.zeros((2, 1))}, dt=-1.0)
    # a stateless graph runs without dt
    graph = conv_graph((1, 3, 3), np.ones((1, 1, 1, 1)), np.zeros(1), 1, 0, 1, 1)
    assert run_graph(graph, {"in": np.ones((2, 1, 3, 3))}).dt is None


def test_bad_graph_content_is_named():
    shape = (2, 3, 3)
    nodes = {
        "in": nir.Input(np.array(shape)),
        "conv": nir.Conv2d(None, np.ones((2, 2, 1, 1)), 1, 0, 1, 1, np.zeros(2)),
        "pool": nir.SumPool2d(np.array([2, 2]), np.array([1, 1]), np.array([0, 0])),
        "join": nir.Scale(np.ones(shape)),
        "out": nir.Output(np.array(shape)),
    }
    edges = [("in", "conv"), ("conv", "pool"), ("pool", "join"), ("in", "join"), ("join", "out")]
    graph = nir.NIRGraph(nodes, edges, type_check=False)
    with pytest.raises(ValueError, match="'join' \\(Scale\\) sums incoming edges of different shapes"):
        run_graph(graph, {"in": np.zeros((1, *shape))})
    bad_stride = conv_graph((1, 4, 4), np.ones((1, 1, 3, 3)), np.zeros(1), 2, "same", 1, 1)
    with pytest.raises(ValueError, match="'conv' \\(Conv2d\\).*'same' needs stride 1"):
        run_graph(bad_stride, {"in": np.zeros((1, 1, 4, 4))})
    wrong_channels = conv_graph((3, 4, 4), np.ones((1, 2, 1, 1)), np.zeros(1), 1, 0, 1, 1)
    with pytest.raises(ValueError, match="'conv' \\(Conv2d\\).*3 channels"):
        run_graph(wrong_channels, {"in": np.zeros((1, 3, 4, 4))})
    with pytest.raises(TypeError, match="graph must be a nir.NIRGraph"):
        run_graph({"in": None}, {})
