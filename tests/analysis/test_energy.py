"""The energy model: Table 3's arithmetic, the two totals and their named differences."""

import math

import pytest

from respike_neuro.analysis.energy import PAPER_TABLE3, EnergyModel, energy_breakdown
from respike_neuro.analysis.ops import count_ops
from respike_neuro.config import ModelConfig, small


def test_energy_model_prices_macs_and_accumulates():
    em = EnergyModel()
    assert em.millijoules(macs=1e9) == pytest.approx(4.6)
    assert em.millijoules(adds=1e9, syops=1e9) == pytest.approx(1.8)
    assert EnergyModel(e_mac_pj=1.0, e_ac_pj=0.0).millijoules(2e9, 5e9, 7e9) == pytest.approx(2.0)


@pytest.mark.parametrize("ann", ["resnet18", "resnet50"])
def test_table3_energy_from_our_ann_count_and_the_quoted_figures(ann):
    """Table 3's energy = 4.6 pJ x (ANN + quoted CA) + 0.9 pJ x SyOPs, with OUR ANN conv count."""
    report = count_ops(ModelConfig(ann=ann))
    breakdown = energy_breakdown(report)
    quoted = breakdown["paper_table3"]
    ann_macs = breakdown["paper_compatible"]["ann_conv_macs"]
    for dataset, energy in quoted["energy_mj"].items():
        ours = EnergyModel().millijoules(ann_macs + quoted["ca_macs"], 0, quoted["syops"][dataset])
        assert ours == pytest.approx(energy, abs=0.02), dataset
    assert quoted is not None and quoted["ann_macs"] == PAPER_TABLE3[ann]["ann_macs"]


def test_totals_and_differences_add_up():
    report = count_ops(small(), 0.2)
    b = energy_breakdown(report)
    complete, paper = b["complete"], b["paper_compatible"]
    diffs = b["differences"].values()
    assert complete["energy_mj"] == pytest.approx(paper["energy_mj"] + sum(d["energy_mj"] for d in diffs))
    assert complete["macs"] == pytest.approx(
        paper["ann_conv_macs"] + paper["fusion_macs"] + sum(d["macs"] for d in diffs)
    )
    assert complete["syops"] == pytest.approx(paper["syops"]) and paper["syops"] > 0
    assert complete["energy_mj"] > paper["energy_mj"]
    # the SNN's stem and shortcut convs are dense MACs the paper leaves out
    assert b["differences"]["snn_stem"]["macs"] > 0 and b["differences"]["snn_shortcut"]["macs"] > 0
    assert "paper_table3" not in b  # Table 3 has no row for the small config


def test_energy_scales_with_the_constants_and_rates():
    report = count_ops(small(), 0.3)
    base = energy_breakdown(report)["components"]
    doubled = energy_breakdown(report, EnergyModel(9.2, 1.8))["components"]
    for c in base:
        assert doubled[c]["energy_mj"] == pytest.approx(2 * base[c]["energy_mj"])
    spike = energy_breakdown(count_ops(small(), 0.0))["components"]["snn_spike"]
    assert spike["energy_mj"] == 0 and spike["dense_macs"] > 0


@pytest.mark.parametrize("field, value", [("e_mac_pj", -1.0), ("e_ac_pj", math.nan)])
def test_bad_energy_constants(field, value):
    with pytest.raises(ValueError, match=field):
        EnergyModel(**{field: value})
