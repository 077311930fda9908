"""Rung 3: the written NIR file, run by independent consumers, reproduces PyTorch spike for spike.

Consumers: the project's numpy reference executor (from the NIR spec) and Norse (`from_nir`, via
norse_adapter). The graph is read back from disk; host ports are fed with the PyTorch model's own
fused stage inputs; every LIF layer is compared at every timestep of two segments.
Strict comparisons run in float64 on both sides: in float32 a membrane within ~1e-7 of the
threshold can round either way (BN folding and Norse's dt/tau*r reorder the arithmetic).
"""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from respike_tests_helpers import lively_model

from respike_neuro.config import small
from respike_neuro.export.nir_graph import build_nir_graph, lif_keys
from respike_neuro.export.norse_adapter import prepare_for_norse, run_norse, split_by_output
from respike_neuro.export.reference_executor import run_graph
from respike_neuro.export.trace import record_snn_io

STAGE_TOL = 1e-4


def residual_clip(seed: int) -> torch.Tensor:
    """A real clip: export/to_nir.py's built-in synthetic test clip (the one its --validate runs)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "to_nir_cli", Path(__file__).resolve().parents[2] / "export" / "to_nir.py"
    )
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    clip, source = cli.builtin_clip(small(), seed)
    assert source.startswith("synthetic test clip"), source
    return clip


@pytest.fixture(scope="module", params=["hybrid", "snn"])
def case(request, tmp_path_factory):
    model = lively_model(request.param)
    path = tmp_path_factory.mktemp("nir") / f"{request.param}.nir"
    nir.write(path, build_nir_graph(model))
    graph = nir.read(path)
    trace = record_snn_io(model.double(), residual_clip(7).double())
    return request.param, graph, trace


def _inputs(graph: nir.NIRGraph, seg: dict) -> dict[str, np.ndarray]:
    return {k: seg[k] for k, n in graph.nodes.items() if isinstance(n, nir.Input)}


def _compare(graph, seg, records, outputs, who):
    keys = lif_keys(graph)
    assert len(keys) == 16
    for key in keys:
        assert records[key].shape == seg[key].shape, (who, key)
        for t in range(seg[key].shape[0]):
            diff = int((records[key][t] != seg[key][t]).sum())
            assert diff == 0, f"{who}: {diff} spikes differ in {key} at t={t}"
    rates = [seg[k].mean() for k in keys]
    assert min(rates) > 0.02, f"a silent layer makes the test weak: {dict(zip(keys, rates))}"
    for key, value in outputs.items():
        err = np.abs(value - seg[key]).max()
        assert err < STAGE_TOL, f"{who}: {key} differs by {err}"


def test_ports_match_the_variant(case):
    arch, graph, trace = case
    ins = set(_inputs(graph, trace["segments"][0]))
    outs = {k for k, n in graph.nodes.items() if isinstance(n, nir.Output)}
    if arch == "hybrid":
        assert ins == {"residual_in", "stage2_in", "stage3_in", "stage4_in"}
        assert outs == {f"stage{k}_out" for k in range(1, 5)}
    else:
        assert ins == {"residual_in"} and outs == {"stage4_out"}


def test_reference_executor_spike_for_spike(case):
    arch, graph, trace = case
    assert len(trace["segments"]) == 2
    for seg in trace["segments"]:
        res = run_graph(graph, _inputs(graph, seg), record=True, dtype=np.float64)
        _compare(graph, seg, res.records, res.outputs, f"reference/{arch}")


def test_norse_spike_for_spike(case):
    arch, graph, trace = case
    stages = prepare_for_norse(graph, dtype=torch.float64)
    assert len(stages) == (4 if arch == "hybrid" else 1)
    for seg in trace["segments"]:
        res = run_norse(graph, _inputs(graph, seg), stages=stages, dtype=torch.float64)
        _compare(graph, seg, res.records, res.outputs, f"norse/{arch}")


def test_norse_float32_default_precision():
    """Norse's own float32 against PyTorch float32: stage outputs close, spikes (nearly) all equal."""
    model = lively_model("snn", seed=2)
    graph = build_nir_graph(model)
    trace = record_snn_io(model, residual_clip(3))
    seg = trace["segments"][0]
    res = run_norse(graph, _inputs(graph, seg), dtype=torch.float32)
    flips = sum(int((res.records[k] != seg[k]).sum()) for k in lif_keys(graph))
    total = sum(seg[k].size for k in lif_keys(graph))
    assert flips <= 1e-4 * total, f"{flips} of {total} spikes differ in float32"
    if flips == 0:
        assert np.abs(res.outputs["stage4_out"] - seg["stage4_out"]).max() < STAGE_TOL


def test_norse_quirks_are_real():
    """Without the adapter's fixes Norse runs our graph wrongly: the fixes are needed, not cosmetic."""
    import norse.torch

    model = lively_model("snn").double()
    graph = build_nir_graph(model)
    trace = record_snn_io(model, residual_clip(4).double())
    # stock from_nir maps neither AvgPool2d nor Scale: the dropped junction breaks the graph
    with pytest.raises((KeyError, ValueError), match="layer1_0_out|No inputs found"):
        module = norse.torch.from_nir(graph, dt=float(graph.metadata["dt"]))
        module(torch.as_tensor(trace["segments"][0]["residual_in"][0][None], dtype=torch.float32))
    # with the rewrite but Norse's depth-first execution order, junctions sum stale shortcut values
    stages = prepare_for_norse(graph, dtype=torch.float64)
    from nirtorch.graph_utils import trace_execution

    st = stages[0]
    start = next(n for n in st.module.graph.node_list if n.name == "residual_in")
    st.module.execution_order = trace_execution(start, lambda n: n.outgoing_nodes.keys())
    seg = trace["segments"][0]
    res = run_norse(graph, _inputs(graph, seg), stages=stages, dtype=torch.float64)
    assert np.abs(res.outputs["stage4_out"] - seg["stage4_out"]).max() > 1e-2


def test_adapter_refuses_what_norse_would_ignore():
    model = lively_model("snn")
    graph = build_nir_graph(model)
    graph.nodes["layer2.1.lif1"].v_reset = np.full_like(graph.nodes["layer2.1.lif1"].v_threshold, 0.1)
    with pytest.raises(ValueError, match=r"layer2\.1\.lif1.*v_reset"):
        prepare_for_norse(graph)
    g2 = build_nir_graph(lively_model("hybrid"))
    g2.edges.append(("stage2_in", "stage3_out"))  # an Output reachable from two Inputs
    with pytest.raises(ValueError, match="stage3_out.*2 Input"):
        split_by_output(g2)
