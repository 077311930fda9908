"""The NIR graph follows docs/nir-contract.md: nodes, edges, ports, folded weights, LIF maths, metadata."""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch
from respike_tests_helpers import conv2d_node
from torch import nn

from respike_neuro.config import small
from respike_neuro.data.clips import split_key_residual
from respike_neuro.export.fold import UnsupportedLayerError, fold_conv_bn
from respike_neuro.export.nir_graph import build_nir_graph, lif_keys, summarize
from respike_neuro.export.trace import record_snn_io
from respike_neuro.models.hybrid import build_model


def port_shapes(g: nir.NIRGraph, kind: type) -> dict[str, tuple[int, ...]]:
    """Declared shape of every Input (kind nir.Input) or Output (nir.Output) port."""
    port = "input" if kind is nir.Input else "output"
    return {
        k: tuple(int(v) for v in (n.input_type if kind is nir.Input else n.output_type)[port])
        for k, n in g.nodes.items()
        if isinstance(n, kind)
    }


def make_model(architecture: str = "hybrid", **changes) -> nn.Module:
    inputs = {"hybrid": "key+res", "snn": "res"}[architecture]
    torch.manual_seed(0)
    model = build_model(small(snn_width=8, architecture=architecture, inputs=inputs, **changes))
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.normal_(0, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 2.0)
                mod.bias.normal_(0, 0.3)
    return model.eval()


def expected_keys(blocks=(2, 2, 2, 2), hybrid=True) -> set[str]:
    keys = {"residual_in", "stem.conv", "stage4_out"}
    for i, n in enumerate(blocks, 1):
        for j in range(n):
            p = f"layer{i}.{j}"
            keys |= {f"{p}.lif1", f"{p}.conv1", f"{p}.lif2", f"{p}.conv2", f"{p}.out"}
            if j == 0:  # every stage's first block downsamples (stride 2) and widens
                keys |= {f"{p}.shortcut.pool", f"{p}.shortcut.conv"}
        if hybrid:
            keys.add(f"stage{i}_out")
            if i > 1:
                keys.add(f"stage{i}_in")
    return keys


def test_hybrid_graph_nodes_edges_ports():
    model = make_model("hybrid", snn_blocks=(2, 1, 1, 2))
    g = build_nir_graph(model)
    assert set(g.nodes) == expected_keys((2, 1, 1, 2), hybrid=True)
    edges = set(g.edges)
    assert len(edges) == len(g.edges)
    # identity shortcut: the previous junction feeds the block's junction directly
    assert ("layer1.0.out", "layer1.1.out") in edges and ("layer1.0.out", "layer1.1.lif1") in edges
    # the host's fused features enter stage 2 on both paths; stage 1 leaves through its port only
    assert {("stage2_in", "layer2.0.lif1"), ("stage2_in", "layer2.0.shortcut.pool")} <= edges
    assert ("layer1.1.out", "stage1_out") in edges
    assert not any(dst.startswith("layer2") for src, dst in edges if src.startswith("layer1"))
    # downsample block: conv2 and shortcut conv are summed in the junction
    assert {("layer2.0.conv2", "layer2.0.out"), ("layer2.0.shortcut.conv", "layer2.0.out")} <= edges
    assert port_shapes(g, nir.Input) == {
        "residual_in": (3, 64, 64),
        "stage2_in": (8, 16, 16),
        "stage3_in": (16, 8, 8),
        "stage4_in": (32, 4, 4),
    }
    outs = port_shapes(g, nir.Output)
    assert outs == {
        "stage1_out": (8, 16, 16),
        "stage2_out": (16, 8, 8),
        "stage3_out": (32, 4, 4),
        "stage4_out": (64, 2, 2),
    }
    meta = g.metadata
    assert json.loads(meta["stage_shapes"]) == {
        f"stage{k}": list(v) for k, v in zip(range(1, 5), outs.values())
    }
    assert json.loads(meta["input_ports"])["stage3_in"] == [16, 8, 8]
    assert meta["timesteps_per_segment"] == 3 and meta["stride"] == 4 and meta["host_fusion"] == 1
    assert json.loads(meta["model_config"])["snn_blocks"] == [2, 1, 1, 2]
    g.infer_types()
    g.check_types()


def test_snn_only_graph_chains_stages():
    g = build_nir_graph(make_model("snn"))
    assert set(g.nodes) == expected_keys(hybrid=False)
    assert [k for k, n in g.nodes.items() if isinstance(n, (nir.Input, nir.Output))] == [
        "residual_in",
        "stage4_out",
    ]
    assert {("layer1.1.out", "layer2.0.lif1"), ("layer3.1.out", "layer4.0.shortcut.pool")} <= set(g.edges)
    assert g.metadata["host_fusion"] == 0


def test_hybrid_without_attention_has_no_host_ports():
    g = build_nir_graph(make_model("hybrid", attention=False))
    assert not any(k.startswith("stage") and k != "stage4_out" for k in g.nodes)


def test_lif_parameters_express_the_neuron():
    model = make_model("hybrid", beta=0.5, threshold=0.8)
    dt = 2e-3
    g = build_nir_graph(model, dt=dt)
    lifs = {k: n for k, n in g.nodes.items() if isinstance(n, nir.LIF)}
    assert list(lifs) == lif_keys(model) == lif_keys(g)
    for key, n in lifs.items():
        # forward Euler: v + dt/tau (v_leak - v + r I) must be 0.5 v + 1.0 I, spike above 0.8, reset to 0
        np.testing.assert_allclose(1 - dt / n.tau, 0.5, rtol=0, atol=1e-12, err_msg=key)
        np.testing.assert_allclose(dt / n.tau * n.r, 1.0, rtol=0, atol=1e-12, err_msg=key)
        assert (n.v_leak == 0).all() and (n.v_reset == 0).all() and (n.v_threshold == 0.8).all()
    assert lifs["layer3.0.lif2"].tau.shape == (32, 4, 4)
    assert g.metadata["dt"] == dt and g.metadata["beta"] == 0.5


def test_conv_weights_are_bn_folded_and_stride_kept():
    model = make_model("snn")
    g = build_nir_graph(model)
    block = model.snn.stages[1][0]
    w, b = fold_conv_bn(block.conv1[0], block.conv1[1])
    node = g.nodes["layer2.0.conv1"]
    np.testing.assert_array_equal(node.weight, w.numpy())
    np.testing.assert_array_equal(node.bias, b.numpy())
    assert tuple(node.stride) == (2, 2) and tuple(node.padding) == (1, 1)
    assert tuple(g.nodes["stem.conv"].stride) == (2, 2)
    pool = g.nodes["layer2.0.shortcut.pool"]
    assert tuple(pool.kernel_size) == (2, 2) and tuple(pool.stride) == (2, 2)
    assert g.nodes["layer2.0.shortcut.conv"].weight.shape == (16, 8, 1, 1)
    g32 = build_nir_graph(model, dtype=np.float32)
    assert g32.nodes["layer2.0.conv1"].weight.dtype == np.float32


def test_write_read_roundtrip(tmp_path):
    model = make_model("hybrid")
    g = build_nir_graph(model, checkpoint_sha256="ab" * 32)
    path = tmp_path / "m.nir"
    nir.write(path, g)
    back = nir.read(path)
    assert set(back.nodes) == set(g.nodes) and set(back.edges) == set(g.edges)
    assert back.metadata["checkpoint_sha256"] == "ab" * 32
    assert back.metadata["format_version"] == "1"
    assert json.loads(back.metadata["model_config"]) == model.cfg.to_dict()
    np.testing.assert_array_equal(back.nodes["layer4.1.conv2"].weight, g.nodes["layer4.1.conv2"].weight)
    back.infer_types()
    back.check_types()


def test_summary_counts():
    model = make_model("snn")
    g = build_nir_graph(model)
    g.infer_types()
    s = summarize(g)
    expected_neurons = 0
    for i, stage in enumerate(model.snn.stages):
        c, h = model.snn.channels[i], 64 // 2 ** (i + 2)
        c_in, h_in = (8, 32) if i == 0 else (model.snn.channels[i - 1], h * 2)
        expected_neurons += len(stage) * c * h * h + c_in * h_in * h_in + (len(stage) - 1) * c * h * h
    assert s.neurons == expected_neurons
    assert s.node_types["LIF"] == 16 and s.node_types["Scale"] == 8 and s.edges == len(g.edges)
    # a single 3x3/p1 conv on 4x4: 10 valid taps per axis (2+3+3+2) -> 100 per (c_in, c_out) pair
    one = nir.NIRGraph(
        nodes={
            "i": nir.Input(input_type={"input": np.array([2, 4, 4])}),
            "c": conv2d_node(np.ones((5, 2, 3, 3)), np.zeros(5), padding=1),
            "o": nir.Output(output_type={"output": np.array([5, 4, 4])}),
        },
        edges=[("i", "c"), ("c", "o")],
    )
    one.infer_types()
    assert summarize(one).synapses == 5 * 2 * 100 and summarize(one).parameters == 95


def test_unsupported_layer_and_ann_only_are_errors():
    model = make_model("snn")
    model.snn.stages[3][1].lif2 = nn.Sigmoid()
    with pytest.raises(UnsupportedLayerError, match=r"layer4\.1\.lif2"):
        build_nir_graph(model)
    ann = build_model(small(architecture="ann", inputs="key", snn_width=8))
    with pytest.raises(ValueError, match="no spiking branch"):
        build_nir_graph(ann)


def test_record_snn_io_keys_shapes_and_consistency():
    model = make_model("hybrid")
    for fusion in model.fusions:
        torch.nn.init.normal_(fusion.proj_out.weight, 0, 0.1)
    g = torch.Generator().manual_seed(5)
    clip = torch.randn(1, 8, 3, 64, 64, generator=g)
    tr = record_snn_io(model, clip)
    assert len(tr["segments"]) == 2 and tr["timesteps"] == 3
    seg = tr["segments"][1]
    graph = build_nir_graph(model)
    ports = {k for k, n in graph.nodes.items() if isinstance(n, (nir.Input, nir.Output))}
    assert set(seg) == ports | set(lif_keys(graph))
    residual = split_key_residual(clip, 4).residual[0, 1]  # segment 2: (3, 3, H, W)
    np.testing.assert_array_equal(seg["residual_in"], residual.numpy())
    assert seg["stage3_in"].shape == (3, 16, 8, 8) and seg["layer2.1.lif2"].shape == (3, 16, 8, 8)
    assert set(np.unique(seg["layer1.0.lif1"])) <= {0.0, 1.0}
    # stage k+1's input is the fusion of stage k's output: proj_out != 0 makes them differ
    assert np.abs(seg["stage2_in"] - seg["stage1_out"]).max() > 1e-3
    with torch.no_grad():
        logits = model.segment_logits(clip).numpy()
    np.testing.assert_array_equal(tr["segment_logits"], logits)
    model.train()
    with pytest.raises(ValueError, match="eval mode"):
        record_snn_io(model, clip)


@pytest.mark.parametrize("variant", ["E2", "E3", "E6", "E7", "E8", "E9"])
def test_every_spiking_variant_exports(variant):
    from respike_neuro.config import VARIANTS

    torch.manual_seed(0)
    model = build_model(small(snn_width=8, **VARIANTS[variant])).eval()
    g = build_nir_graph(model)
    trace = record_snn_io(model, torch.randn(1, 8, 3, 64, 64))
    assert g.metadata["timesteps_per_segment"] == trace["timesteps"]
    ports = {k for k, n in g.nodes.items() if isinstance(n, (nir.Input, nir.Output))}
    with_attention = model.fusions is not None
    assert with_attention == (variant in ("E3", "E9"))
    assert ports == expected_keys(hybrid=with_attention) - {
        k for k in expected_keys() if "layer" in k or "stem" in k
    }
    # the golden trace holds every stage output, also where the graph has no port for it
    assert set(trace["segments"][0]) == ports | set(lif_keys(g)) | {f"stage{k}_out" for k in range(1, 5)}
