"""BN folding: the folded eval-form spiking branch computes what the unfolded one computes."""

from __future__ import annotations

import pytest
import torch
from respike_tests_helpers import lively_model
from torch import nn

from respike_neuro.config import small
from respike_neuro.export.fold import UnsupportedLayerError, check_snn, fold_conv_bn, fold_model, fold_snn
from respike_neuro.export.trace import record_snn_io
from respike_neuro.models.hybrid import build_model


def clip_of(seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(1, 1, 3, 64, 64, generator=g)
    return (base + 0.4 * torch.randn(1, 8, 3, 64, 64, generator=g).cumsum(1)).to(dtype)


def test_fold_conv_bn_matches_bn_of_conv():
    torch.manual_seed(3)
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False).double()
    bn = nn.BatchNorm2d(6).double()
    with torch.no_grad():
        bn.running_mean.normal_(0, 2)
        bn.running_var.uniform_(0.1, 4)
        bn.weight.normal_(1, 0.5)
        bn.bias.normal_(0, 1)
    bn.eval()
    x = torch.randn(5, 4, 9, 9, dtype=torch.float64)
    w, b = fold_conv_bn(conv, bn)
    got = torch.nn.functional.conv2d(x, w, b, stride=2, padding=1)
    assert torch.allclose(got, bn(conv(x)), atol=1e-12, rtol=0)


@pytest.mark.parametrize("architecture", ["hybrid", "snn"])
def test_folded_model_equals_unfolded_float64(architecture):
    model = lively_model(architecture).double()
    folded = fold_model(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.snn.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.snn.modules()), "original must stay unfolded"
    clip = clip_of(1, torch.float64)
    ref, got = record_snn_io(model, clip), record_snn_io(folded, clip)
    for seg_ref, seg_got in zip(ref["segments"], got["segments"], strict=True):
        for key, value in seg_ref.items():
            if ".lif" in key:
                assert 0.02 < value.mean() < 0.8, f"{key} is (nearly) silent or saturated: test would be weak"
                assert (value == seg_got[key]).all(), f"spikes differ in {key}"
            else:
                assert abs(value - seg_got[key]).max() < 1e-9, key
    assert abs(ref["segment_logits"] - got["segment_logits"]).max() < 1e-9


def test_folded_snn_float32_within_tolerance():
    model = lively_model("snn")
    folded = fold_snn(model.snn)
    x = clip_of(2)[0, 1:4].unsqueeze(1)  # (T=3, N=1, 3, H, W)
    with torch.no_grad():
        a, b = model.snn(x), folded(x)
    assert a.dtype == b.dtype == torch.float32
    assert (a - b).abs().max() < 1e-4 * max(1.0, float(a.abs().max()))


def test_unsupported_layers_are_named():
    model = lively_model("snn")
    model.snn.stages[0][1].lif1 = nn.ReLU()
    with pytest.raises(UnsupportedLayerError, match=r"layer1\.1\.lif1.*ReLU"):
        check_snn(model.snn)
    model = lively_model("snn")
    model.snn.stages[1][0].shortcut[0] = nn.MaxPool2d(2)
    with pytest.raises(UnsupportedLayerError, match=r"layer2\.0\.shortcut\.0.*MaxPool2d"):
        fold_snn(model.snn)
    model = lively_model("snn")
    model.snn.stages[2][0].conv2 = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.GroupNorm(4, 32))
    with pytest.raises(UnsupportedLayerError, match=r"layer3\.0\.conv2.*GroupNorm"):
        fold_snn(model.snn)
    model = lively_model("snn")
    model.snn.extra = nn.Linear(2, 2)
    with pytest.raises(UnsupportedLayerError, match="extra"):
        fold_snn(model.snn)


def test_bn_without_running_stats_is_refused():
    model = lively_model("snn")
    model.snn.stem[1] = nn.BatchNorm2d(8, track_running_stats=False)
    with pytest.raises(UnsupportedLayerError, match="stem.*running statistics"):
        fold_snn(model.snn)


def test_ann_only_model_has_nothing_to_fold():
    model = build_model(small(architecture="ann", inputs="key", snn_width=8))
    with pytest.raises(ValueError, match="no spiking branch"):
        fold_model(model)
