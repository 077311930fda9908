"""Operation counts: Table 3's ANN figures, dense counts vs torch's FlopCounterMode, SyOPs = rate x MACs."""

import re

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from respike_neuro.analysis.ops import MATMUL_KINDS, apply_rates, count_ops, snn_layer_name, trace_config
from respike_neuro.config import VARIANTS, ModelConfig, small
from respike_neuro.models.hybrid import build_model


@pytest.mark.parametrize("ann, table3", [("resnet18", 7.25), ("resnet50", 16.35)])
def test_ann_conv_macs_reproduce_table3(ann, table3):
    report = count_ops(ModelConfig(ann=ann))
    ann_conv = report.total("dense_macs", "ann", ("conv",))
    assert round(ann_conv / 1e9, 2) == table3
    # on the T/s = 4 key frames: 4x the per-frame count of the same backbone
    per_frame = count_ops(ModelConfig(ann=ann, frames=4, stride=4)).total("dense_macs", "ann", ("conv",))
    assert ann_conv == 4 * per_frame


def test_reference_fusion_tokens_and_stage_shapes():
    trace, _ = trace_config(ModelConfig())
    assert [f["query_tokens"] for f in trace.fusion_tokens] == [196, 196, 196, 49]
    assert [f["calls"] for f in trace.fusion_tokens] == [12] * 4  # (s-1) timesteps x 4 segments
    assert trace.snn_stages[0] == (3, 4, 64, 56, 56)
    assert trace.ann_stages[-1] == (4, 512, 7, 7)


def _flop_counter_by_component(model, clip):
    """FLOPs per component from torch's counter; SDPA forced onto the math path (CPU counts it as 0)."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
        model(clip)
    counts = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    patterns = {
        "ann": r"ReSpike\.ann\.(stem|stages\.\d+)",
        "snn": r"ReSpike\.snn\.(stem|stages\.\d+\.\d+)",
        "fusion": r"ReSpike\.fusions\.\d+",
        "head": r"ReSpike\.head",
    }
    per = {c: sum(v for k, v in counts.items() if re.fullmatch(p, k)) for c, p in patterns.items()}
    return per, counts.get("Global", 0)


@pytest.mark.parametrize("variant", ["E1", "E3", "E6", "E9"])
def test_dense_counts_match_torch_flop_counter(variant):
    cfg = small(resolution=32, snn_width=8, **VARIANTS[variant])
    report = count_ops(cfg)
    ours = {
        "ann": report.total("dense_macs", "ann", MATMUL_KINDS),
        "snn": report.total("dense_macs", "snn_spike", MATMUL_KINDS)
        + report.total("dense_macs", "snn_dense", MATMUL_KINDS),
        "fusion": report.total("dense_macs", "fusion", MATMUL_KINDS),
        "head": report.total("dense_macs", "head", MATMUL_KINDS),
    }
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    per, total = _flop_counter_by_component(model, torch.randn(1, cfg.frames, 3, 32, 32))
    assert total > 0
    assert {c: 2 * v for c, v in ours.items()} == per  # FlopCounterMode: 2 FLOPs per MAC
    assert 2 * sum(ours.values()) == total


def test_attention_matmuls_are_counted_although_cpu_sdpa_reports_none():
    cfg = small(resolution=32, snn_width=8)
    report = count_ops(cfg)
    attention = report.total("dense_macs", "fusion", ("matmul",))
    assert attention > 0
    model = build_model(cfg).eval()
    clip = torch.randn(1, cfg.frames, 3, 32, 32)
    with FlopCounterMode(display=False) as default, torch.no_grad():
        model(clip)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as math_path, torch.no_grad():
        model(clip)
    # the CPU's fused SDPA kernel is invisible to the counter; the math path shows exactly our QK^T + AV
    assert math_path.get_total_flops() - default.get_total_flops() == 2 * attention


def test_syops_are_rate_times_dense_macs():
    cfg = small()  # 64x64, 8 frames, s=4: SNN stage 1 at 16x16, 3 timesteps x 2 segments, width 16
    trace, _ = trace_config(cfg)
    by_name = {layer.name: layer for layer in apply_rates(trace, 1.0)}
    conv = by_name["layer1.1.conv1"]
    assert conv.spike_driven and conv.rate_source == "layer1.1.lif1" and conv.macs == 0
    assert conv.dense_macs == (3 * 2) * (16 * 16) * 16 * (3 * 3 * 16)  # T N  H W  C_out  k k C_in
    assert conv.syops == conv.dense_macs
    assert sum(layer.syops for layer in apply_rates(trace, 0.0)) == 0
    # per-layer dict: only layer1.1.lif1 spikes, at rate 0.25 -> only its conv has SyOPs
    rates = dict.fromkeys(trace.lif_neuron_steps, 0.0)
    rates["layer1.1.lif1"] = 0.25
    layers = apply_rates(trace, rates)
    assert sum(layer.syops for layer in layers) == 0.25 * conv.dense_macs
    # the stem and the shortcut convs read real values: dense MACs whatever the rate
    dense = {layer.name: layer for layer in layers}
    assert dense["stem.conv"].macs > 0 and not dense["stem.conv"].spike_driven
    assert dense["layer2.0.shortcut.conv"].macs == dense["layer2.0.shortcut.conv"].dense_macs > 0


def test_lif_names_follow_the_nir_contract():
    trace, _ = trace_config(small())
    names = list(trace.lif_neuron_steps)
    assert len(names) == 2 * sum(small().snn_blocks)
    assert all(re.fullmatch(r"layer[1-4]\.\d\.lif[12]", n) for n in names)
    assert snn_layer_name("stages.1.0.shortcut.1.0") == "layer2.0.shortcut.conv"
    with pytest.raises(ValueError, match="not part of the MS-ResNet"):
        snn_layer_name("stages.0.0.bogus")


def test_bad_rates_are_rejected_with_the_layer_named():
    trace, _ = trace_config(small())
    rates = dict.fromkeys(trace.lif_neuron_steps, 0.1)
    del rates["layer3.1.lif2"]
    with pytest.raises(ValueError, match="missing layer3.1.lif2"):
        apply_rates(trace, rates)
    with pytest.raises(ValueError, match="unknown layer9.0.lif1"):
        apply_rates(trace, {**dict.fromkeys(trace.lif_neuron_steps, 0.1), "layer9.0.lif1": 0.1})
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        apply_rates(trace, 1.5)
    with pytest.raises(TypeError, match="must be a number"):
        apply_rates(trace, {**dict.fromkeys(trace.lif_neuron_steps, 0.1), "layer1.0.lif1": "high"})
