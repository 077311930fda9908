"""Loihi 2 resource / host-traffic report on contract-conforming NIR graphs built with nir directly."""

import json

import nir
import numpy as np
import pytest
from respike_tests_helpers import conv2d_node

from respike_neuro.sim.resources import Loihi2Limits, loihi2_report

BETA, THETA, DT = 0.25, 4 / 3, 1e-4


def lif(shape):
    ones = np.ones(shape)
    return nir.LIF(tau=ones * DT / (1 - BETA), r=ones / (1 - BETA), v_leak=0 * ones, v_threshold=ones * THETA)


def conv(c_in, c_out, k, stride=1, pad=1, hw=None):
    return conv2d_node(np.ones((c_out, c_in, k, k)) * 0.1, np.zeros(c_out), padding=pad, stride=stride,
                       input_shape=hw)


def tiny_graph(steps=3):
    """residual_in(2,4,4) -> stem.conv(3x3) -> {lif1, out}; lif1 -> conv1(3x3) -> out; out -> stage1_out."""
    nodes = {
        "residual_in": nir.Input(np.array([2, 4, 4])),
        "stem.conv": conv(2, 3, 3, hw=(4, 4)),
        "layer1.0.lif1": lif((3, 4, 4)),
        "layer1.0.conv1": conv(3, 3, 3, hw=(4, 4)),
        "layer1.0.out": nir.Scale(np.ones((3, 4, 4))),
        "stage1_out": nir.Output(np.array([3, 4, 4])),
    }
    edges = [
        ("residual_in", "stem.conv"),
        ("stem.conv", "layer1.0.lif1"),
        ("stem.conv", "layer1.0.out"),
        ("layer1.0.lif1", "layer1.0.conv1"),
        ("layer1.0.conv1", "layer1.0.out"),
        ("layer1.0.out", "stage1_out"),
    ]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"timesteps_per_segment": steps})


def test_tiny_graph_hand_counted():
    rep = loihi2_report(tiny_graph(), graded_bits=16)
    # 3x3, pad 1 on a 4-wide axis: output positions see 2, 3, 3, 2 valid taps = 10 pairs per axis
    stem = rep.node("stem.conv")
    assert stem.synapses == 3 * 2 * 10 * 10  # 600 (dense formula incl. padding: 3*16*2*9 = 864)
    assert stem.stored_weights == 3 * 2 * 9
    assert stem.graded_neurons == 48  # fans out to lif1 and the junction: carrier neurons
    assert stem.cores == 1 and stem.out_msg_bits == 16 and stem.in_msg_bits == 16
    l1 = rep.node("layer1.0.lif1")
    assert (l1.lif_neurons, l1.synapses, l1.in_msg_bits, l1.out_msg_bits) == (48, 48, 16, 1)
    c1 = rep.node("layer1.0.conv1")
    assert c1.synapses == 3 * 3 * 100 and c1.graded_neurons == 0 and c1.cores == 0
    assert c1.hosted_by == "layer1.0.out" and c1.in_msg_bits == 1
    out = rep.node("layer1.0.out")
    assert (out.graded_neurons, out.synapses, out.cores) == (48, 48, 1)  # one-to-one from the stem carrier
    t = rep.totals
    assert t["lif_neurons"] == 48 and t["graded_neurons"] == 96 and t["neurons"] == 144
    assert t["synapses"] == 600 + 48 + 900 + 48
    assert t["weight_bits_shared"] == 8 * (54 + 3 + 81 + 3)
    assert t["weight_bits_per_connection"] == 8 * t["synapses"]
    assert t["cores"] == 3 and t["chips"] == 1
    assert t["host_in_bytes_per_step"] == 2 * 16 * 16 // 8  # 32 values x 16 bits
    assert t["host_out_bytes_per_step"] == 3 * 16 * 16 // 8
    assert t["host_bytes_per_segment"] == 3 * (64 + 96)
    json.dumps(rep.to_dict())
    table = rep.format_table()
    assert "layer1.0.conv1" in table and "neuro-cores 3" in table


def test_traffic_scales_with_payload_width_and_binary_outputs():
    rep24 = loihi2_report(tiny_graph(), graded_bits=24)
    assert rep24.totals["host_in_bytes_per_step"] == 32 * 3
    g = tiny_graph()
    g.nodes["lif_out"] = nir.Output(np.array([3, 4, 4]))
    g.edges.append(("layer1.0.lif1", "lif_out"))
    rep = loihi2_report(g, graded_bits=16)
    assert rep.node("lif_out").host_out_bytes == 48 // 8  # binary spikes: 1 bit each


def block_graph(c, hw, hybrid):
    """Stem + two stages (one block each, stage 2 downsampling) with the contract's port layout."""
    h2 = hw // 2
    nodes = {"residual_in": nir.Input(np.array([3, hw, hw])), "stem.conv": conv(3, c, 3, hw=(hw, hw))}
    edges = [("residual_in", "stem.conv")]

    def block(i, cin, cout, size_in, src, down):
        p = f"layer{i}.0"
        size = size_in // 2 if down else size_in
        nodes[f"{p}.lif1"] = lif((cin, size_in, size_in))
        nodes[f"{p}.conv1"] = conv(cin, cout, 3, stride=2 if down else 1, hw=(size_in, size_in))
        nodes[f"{p}.lif2"] = lif((cout, size, size))
        nodes[f"{p}.conv2"] = conv(cout, cout, 3, hw=(size, size))
        nodes[f"{p}.out"] = nir.Scale(np.ones((cout, size, size)))
        edges.extend(
            [
                (src, f"{p}.lif1"),
                (f"{p}.lif1", f"{p}.conv1"),
                (f"{p}.conv1", f"{p}.lif2"),
                (f"{p}.lif2", f"{p}.conv2"),
                (f"{p}.conv2", f"{p}.out"),
            ]
        )
        if down:
            nodes[f"{p}.shortcut.pool"] = nir.AvgPool2d(np.array([2, 2]), np.array([2, 2]), np.array([0, 0]))
            nodes[f"{p}.shortcut.conv"] = conv(cin, cout, 1, pad=0, hw=(size, size))
            edges.extend(
                [
                    (src, f"{p}.shortcut.pool"),
                    (f"{p}.shortcut.pool", f"{p}.shortcut.conv"),
                    (f"{p}.shortcut.conv", f"{p}.out"),
                ]
            )
        else:
            edges.append((src, f"{p}.out"))
        return f"{p}.out"

    j1 = block(1, c, c, hw, "stem.conv", False)
    if hybrid:
        nodes["stage1_out"] = nir.Output(np.array([c, hw, hw]))
        nodes["stage2_in"] = nir.Input(np.array([c, hw, hw]))
        edges.append((j1, "stage1_out"))
        j2 = block(2, c, 2 * c, hw, "stage2_in", True)
    else:
        j2 = block(2, c, 2 * c, hw, j1, True)
    nodes["stage2_out"] = nir.Output(np.array([2 * c, h2, h2]))
    edges.append((j2, "stage2_out"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"timesteps_per_segment": 3})


def test_hybrid_vs_snn_only_traffic():
    c, hw, bits = 4, 8, 16
    hyb = loihi2_report(block_graph(c, hw, True), graded_bits=bits).totals
    snn = loihi2_report(block_graph(c, hw, False), graded_bits=bits).totals
    assert hyb["host_in_bytes_per_step"] == (3 * hw * hw + c * hw * hw) * bits // 8
    assert hyb["host_out_bytes_per_step"] == (c * hw * hw + 2 * c * (hw // 2) ** 2) * bits // 8
    assert snn["host_in_bytes_per_step"] == 3 * hw * hw * bits // 8
    assert snn["host_out_bytes_per_step"] == 2 * c * (hw // 2) ** 2 * bits // 8


def test_downsample_shortcut_counts():
    rep = loihi2_report(block_graph(4, 8, False))
    pool = rep.node("layer2.0.shortcut.pool")
    assert pool.shape == (4, 4, 4) and pool.synapses == 4 * 8 * 8  # k2 s2: each input used once
    assert pool.graded_neurons == 4 * 16  # feeds a synaptic node: needs carriers
    sc = rep.node("layer2.0.shortcut.conv")
    assert sc.synapses == 8 * 4 * 16 and sc.hosted_by == "layer2.0.out"
    c1 = rep.node("layer2.0.conv1")  # 3x3 s2 p1 on 8 -> 4: taps per axis 2+3+3+3 = 11
    assert c1.shape == (8, 4, 4) and c1.synapses == 8 * 4 * 11 * 11


def test_core_estimate_monotone_in_size():
    small = Loihi2Limits(synaptic_bits_per_core=64 * 1024 * 8)
    for sharing in (True, False):
        cores = [
            loihi2_report(block_graph(c, hw, True), weight_sharing=sharing, limits=small).totals["cores"]
            for c, hw in [(2, 8), (4, 8), (4, 16), (16, 32), (64, 64)]
        ]
        assert cores == sorted(cores) and cores[-1] > cores[0], (sharing, cores)
    big = loihi2_report(block_graph(64, 64, True)).node("layer1.0.lif1")
    assert big.cores == 64 * 64 * 64 // 8192
    g = block_graph(64, 32, True)
    shared = loihi2_report(g, weight_sharing=True).totals["cores"]
    per_conn = loihi2_report(g, weight_sharing=False).totals["cores"]
    assert per_conn > shared


def test_bad_graph_input():
    with pytest.raises(TypeError, match="nir.NIRGraph"):
        loihi2_report({"nodes": {}})
    g = tiny_graph()
    g.nodes["layer1.0.lif1"] = nir.CubaLIF(
        tau_syn=np.ones(3), tau_mem=np.ones(3), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.ones(3)
    )
    with pytest.raises(ValueError, match="'layer1.0.lif1'.*CubaLIF"):
        loihi2_report(g)
    g = tiny_graph()
    g.nodes["layer1.0.out"] = nir.Scale(np.ones((3, 2, 2)))
    with pytest.raises(ValueError, match="layer1.0.out"):
        loihi2_report(g)
    g = tiny_graph()
    g.edges.append(("layer1.0.out", "layer1.0.lif1"))
    with pytest.raises(ValueError, match="cycle"):
        loihi2_report(g)
    g = tiny_graph()
    g.edges.append(("layer1.0.out", "nowhere"))
    with pytest.raises(ValueError, match="nowhere"):
        loihi2_report(g)
    with pytest.raises(ValueError, match="graded_bits"):
        loihi2_report(tiny_graph(), graded_bits=32)


def test_report_on_graph_read_back_from_hdf5(tmp_path):
    path = tmp_path / "tiny.nir"
    nir.write(path, block_graph(4, 8, True))
    read = loihi2_report(nir.read(path)).totals
    assert read == loihi2_report(block_graph(4, 8, True)).totals
    assert read["host_bytes_per_segment"] == 3 * read["host_bytes_per_step"]


def test_weight_memory_at_the_deployed_mantissa_width():
    g = block_graph(4, 8, True)
    full, narrow = loihi2_report(g), loihi2_report(g, limits=Loihi2Limits(weight_bits=3))
    for key in ("weight_bits_shared", "weight_bits_per_connection"):
        assert narrow.totals[key] * 8 == full.totals[key] * 3 > 0
    assert "3-bit weights" in narrow.format_table()
    for bad in (0, 9):
        with pytest.raises(ValueError, match="weight_bits must be in"):
            Loihi2Limits(weight_bits=bad)
