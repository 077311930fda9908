"""Measured spike rates: per NIR LIF name, in [0, 1], equal to a direct computation."""

import pytest
import torch

from respike_neuro.analysis.ops import count_ops, trace_config
from respike_neuro.analysis.spike_rates import counting, lif_layers, measure_spike_rates
from respike_neuro.config import VARIANTS, small
from respike_neuro.models.hybrid import branch_frames, build_model


@pytest.fixture(scope="module")
def snn_model():
    torch.manual_seed(0)
    cfg = small(resolution=32, snn_width=8, **VARIANTS["E6"])  # SNN only, residual frames
    return cfg, build_model(cfg).eval()


def test_rates_are_keyed_like_the_nir_graph_and_in_range(snn_model):
    cfg, model = snn_model
    clips = [torch.randn(2, cfg.frames, 3, 32, 32) * 3 for _ in range(2)]
    rates = measure_spike_rates(model, clips)
    trace, _ = trace_config(cfg)
    assert list(rates) == list(lif_layers(model)) == list(trace.lif_neuron_steps)
    assert all(0.0 <= r <= 1.0 for r in rates.values())
    assert max(rates.values()) > 0
    count_ops(cfg, rates)  # the same dict prices the model


def test_first_layer_rate_equals_a_direct_computation(snn_model):
    cfg, model = snn_model
    clip = torch.randn(3, cfg.frames, 3, 32, 32) * 3
    rates = measure_spike_rates(model, [clip])
    with torch.no_grad():
        frames = branch_frames(clip, cfg.stride, cfg.inputs, "snn")  # (B, N, T, 3, H, W)
        x = model.snn.forward_stem(frames.flatten(0, 1).transpose(0, 1))
        spikes = model.snn.stages[0][0].lif1(x)
    assert rates["layer1.0.lif1"] == pytest.approx(spikes.sum(dtype=torch.float64).item() / spikes.numel())


def test_rates_over_batches_equal_rates_over_the_joined_batch(snn_model):
    cfg, model = snn_model
    a, b = (torch.randn(2, cfg.frames, 3, 32, 32) * 2 for _ in range(2))
    split = measure_spike_rates(model, [(a, 0), (b, 1)])  # (clip, label) pairs like a DataLoader
    joined = measure_spike_rates(model, [torch.cat([a, b])])
    assert split == pytest.approx(joined, rel=1e-9)


def test_silent_input_gives_zero_rates_and_zero_syops(snn_model):
    cfg, model = snn_model
    # a static clip has zero residuals; fresh BN (eval) adds no bias: no neuron ever reaches threshold
    rates = measure_spike_rates(model, [torch.ones(1, cfg.frames, 3, 32, 32)])
    assert set(rates.values()) == {0.0}
    assert count_ops(cfg, rates).total("syops") == 0


def test_measurement_restores_mode_and_removes_hooks(snn_model):
    cfg, model = snn_model
    model.train()
    measure_spike_rates(model, [torch.randn(1, cfg.frames, 3, 32, 32)], max_batches=1)
    assert model.training
    model.eval()
    with counting(model) as counter:
        pass
    assert not any(m._forward_hooks for m in lif_layers(model).values())
    assert counter.neuron_steps == dict.fromkeys(counter.layers, 0)


def test_bad_input():
    ann_only = build_model(small(resolution=32, **VARIANTS["E4"]))
    with pytest.raises(ValueError, match="no spiking branch"):
        measure_spike_rates(ann_only, [])
    cfg = small(resolution=32, snn_width=8)
    with pytest.raises(ValueError, match="no batches"):
        measure_spike_rates(build_model(cfg), [])
    with pytest.raises(TypeError, match="expected a clip tensor"):
        measure_spike_rates(build_model(cfg), [("not a clip", 0)])
