"""analysis/plots.py: every figure renders to a real PNG from real components' data; the data
helpers (attention capture, raster selection, spike agreement) compute what they claim."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from respike_neuro.analysis import attention, plots
from respike_neuro.analysis.energy import energy_breakdown
from respike_neuro.analysis.ops import count_ops
from respike_neuro.config import small
from respike_neuro.models.hybrid import build_model

CFG = small(snn_width=8, snn_blocks=(1, 1, 1, 1), num_classes=4)
PNG = b"\x89PNG\r\n\x1a\n"


def _png(path) -> None:
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 5_000


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model(CFG)
    for fusion in m.fusions:  # zero-initialised by design: give the fusion an effect
        torch.nn.init.normal_(fusion.proj_out.weight, std=0.3)
    return m.eval()


def test_layer_rates_and_stride_plots_write_pngs(tmp_path):
    layers = [f"layer{i}.0.lif{j}" for i in range(1, 5) for j in (1, 2)]
    a = {k: 0.01 * n for n, k in enumerate(layers)}
    plots.plot_layer_rates({"a": a, "b": {k: v / 2 for k, v in a.items()}}, path=tmp_path / "r.png")
    plots.plot_rates_vs_stride({2: a, 4: a, 8: {k: v * 1.5 for k, v in a.items()}}, path=tmp_path / "s.png")
    _png(tmp_path / "r.png")
    _png(tmp_path / "s.png")
    with pytest.raises(ValueError, match="not a spike rate"):
        plots.plot_layer_rates({"x": 1.5})
    with pytest.raises(ValueError, match="names layers"):
        plots.plot_layer_rates({"a": a, "b": {"other": 0.1}})


def test_raster_picks_busiest_and_only_active_neurons(tmp_path):
    rng = np.random.default_rng(1)
    spikes = np.zeros((6, 4, 5, 5), dtype=bool)
    spikes[:, 0, 0, 0] = True  # the busiest neuron (flat index 0)
    active = rng.choice(np.arange(1, 100), 30, replace=False)
    flat = spikes.reshape(6, -1)
    flat[2, active] = True
    idx, events = plots.raster_events(spikes, neurons=10)
    assert idx.size == 10 and 0 in idx
    assert events.shape == (10, 6) and events.any(1).all(), "every chosen neuron spiked"
    assert set(idx) <= {0, *active.tolist()}
    idx0, _ = plots.raster_events(np.zeros((3, 8)), neurons=4)
    assert idx0.tolist() == [0, 1, 2, 3]
    plots.plot_spike_raster({"layer1.0.lif1": spikes}, steps_per_segment=3, path=tmp_path / "raster.png")
    _png(tmp_path / "raster.png")
    with pytest.raises(ValueError, match="neurons"):
        plots.raster_events(spikes, neurons=0)


def test_energy_plots_from_real_breakdowns(tmp_path):
    b = energy_breakdown(count_ops(CFG, 0.1))
    parts = plots.paper_compatible_components(b)
    assert sum(parts.values()) == pytest.approx(b["paper_compatible"]["energy_mj"], rel=1e-12)
    plots.plot_energy_breakdown({"small": b}, path=tmp_path / "e.png")
    plots.plot_energy_comparison({"ours": 1.0, "theirs": 10.0}, ours=["ours"], path=tmp_path / "c.png")
    plots.plot_accuracy_energy([2, 4], [0.5, 0.6], {"complete": [2e-3, 1e-3]}, chance=0.25,
                               path=tmp_path / "a.png")
    for name in ("e", "c", "a"):
        _png(tmp_path / f"{name}.png")
    with pytest.raises(ValueError, match="energy_breakdown"):
        plots.plot_energy_breakdown({"x": {"components": {}}})
    with pytest.raises(ValueError, match="positive"):
        plots.plot_energy_comparison({"zero": 0.0})
    with pytest.raises(ValueError, match="one accuracy per stride"):
        plots.plot_accuracy_energy([2, 4], [0.5], {})


def test_cross_attention_maps_are_the_weights_the_model_used(model, tmp_path):
    torch.manual_seed(1)
    clips = torch.randn(2, CFG.frames, 3, CFG.resolution, CFG.resolution)
    attn = model.fusions[-1].block.cross_attn
    seen = {}

    def hook(module, args, out):
        seen["x"], seen["ctx"], seen["out"] = args[0], args[1], out

    handle = attn.register_forward_hook(hook)
    try:
        res = attention.cross_attention_maps(model, clips, stage=-1)
    finally:
        handle.remove()
    b, n, t = 2, CFG.segments, CFG.stride - 1
    lq, lk = np.prod(res["query_grid"]), np.prod(res["context_grid"])
    assert res["maps"].shape == (b, n, t, lq, lk)
    np.testing.assert_allclose(res["maps"].sum(-1), 1.0, atol=1e-5)
    # rebuild the module's output from the returned per-head weights (undoing the reshape)
    heads = torch.from_numpy(res["heads"]).permute(2, 0, 1, 3, 4, 5).reshape(t * b * n, -1, lq, lk)
    assert seen["ctx"].shape[0] == b * n  # one context per segment serves its t timesteps
    v = attn.split_heads(attn.to_v(seen["ctx"].repeat(t, 1, 1)))
    rebuilt = attn.to_out((heads @ v).transpose(1, 2).flatten(2))
    torch.testing.assert_close(rebuilt, seen["out"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(res["logits"], model(clips).detach().numpy(), rtol=1e-5, atol=1e-6)

    frames = np.random.default_rng(0).random((b, 3, CFG.resolution, CFG.resolution))
    attention.plot_attention(frames, res["maps"][:, 0].mean(1), query_grid=res["query_grid"],
                         context_grid=res["context_grid"], path=tmp_path / "att.png")
    _png(tmp_path / "att.png")
    with pytest.raises(ValueError, match="maps must be"):
        attention.plot_attention(frames, res["maps"][:, 0, 0, :1], query_grid=res["query_grid"],
                             context_grid=res["context_grid"])
    with pytest.raises(ValueError, match="out of range"):
        attention.cross_attention_maps(model, clips, stage=4)


def test_upsample_map_keeps_a_constant_and_resizes():
    up = attention.upsample_map(np.full(4, 0.25), (2, 2), 64)
    assert up.shape == (64, 64)
    np.testing.assert_allclose(up, 0.25)
    peak = attention.upsample_map(np.array([1.0, 0, 0, 0]), (2, 2), 64)
    assert peak[:16, :16].mean() > peak[-16:, -16:].mean()


def test_spike_agreement_counts_flips_and_resources_plot(tmp_path):
    a = {"layer1.0.lif1": np.zeros((4, 2, 3, 3), bool)}
    b = {"layer1.0.lif1": a["layer1.0.lif1"].copy()}
    assert plots.spike_agreement(a, b) == {"layer1.0.lif1": 1.0}
    b["layer1.0.lif1"][1, 0, 0, 0] = True
    assert plots.spike_agreement(a, b)["layer1.0.lif1"] == pytest.approx(1 - 1 / 72)
    with pytest.raises(ValueError, match="different LIF layers"):
        plots.spike_agreement(a, {"x": a["layer1.0.lif1"]})
    agree = {"float": {"l1": 1.0, "l2": 1.0}, "fixed": {"l1": 0.99, "l2": 0.9}}
    plots.plot_agreement(agree, path=tmp_path / "g.png")
    _png(tmp_path / "g.png")

    from respike_neuro.export.nir_graph import build_nir_graph
    from respike_neuro.sim.resources import loihi2_report

    torch.manual_seed(0)
    report = loihi2_report(build_nir_graph(build_model(small(resolution=32, snn_width=8,
                                                             snn_blocks=(1, 1, 1, 1))).eval()))
    plots.plot_resources(report.to_dict(), path=tmp_path / "res.png")
    _png(tmp_path / "res.png")
    with pytest.raises(ValueError, match="ResourceReport"):
        plots.plot_resources({"nodes": []})
