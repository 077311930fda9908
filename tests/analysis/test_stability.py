"""The float model's agreement with itself under LSB-sized weight noise."""

import importlib.util
from pathlib import Path

import pytest
import torch

from respike_neuro.analysis.spike_rates import lif_layers
from respike_neuro.analysis.stability import perturbed_agreement, threshold_agreement
from respike_neuro.checkpoint import load_model

_spec = importlib.util.spec_from_file_location("bridge_helpers", Path(__file__).parents[1] / "test_bridge.py")
_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helpers)


def test_noise_size_matters_and_weights_are_restored(tmp_path):
    model, _ = load_model(_helpers.make_checkpoint(tmp_path / "tiny.pt"))  # BN warmed: it spikes
    model = model.double()
    clips = _helpers.built_in_clips(12).double()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert perturbed_agreement(model, clips, bits=50, draws=2) == [1.0, 1.0]  # 2**-50: no decision moves
    coarse = perturbed_agreement(model, clips, bits=2, draws=3)  # +-50 % of the largest weight
    assert len(coarse) == 3 and min(coarse) < 1.0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="bits must be in"):
        perturbed_agreement(model, clips, bits=1, draws=1)


def test_threshold_agreement_moves_only_thresholds_and_restores_them(tmp_path):
    model, _ = load_model(_helpers.make_checkpoint(tmp_path / "tiny.pt"))
    model = model.double()
    clips = _helpers.built_in_clips(12).double()
    lif = model.snn.stages[0][0].lif1
    theta = lif.threshold
    assert threshold_agreement(model, clips, {"layer1.0.lif1": theta}) == 1.0  # unchanged: all agree
    silent = {n: 100.0 for n in lif_layers(model)}
    assert threshold_agreement(model, clips, silent) < 1.0  # a silent SNN changes some decisions
    assert lif.threshold == theta
    with pytest.raises(ValueError, match="no LIF layer named 'layer9.0.lif1'"):
        threshold_agreement(model, clips, {"layer9.0.lif1": 1.0})
