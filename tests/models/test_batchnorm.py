"""Per-timestep BatchNorm (the authors' per-step loop) against a hand-written loop of BN calls."""

import copy

import pytest
import torch
from torch import nn

from respike_neuro.models.batchnorm import batch_norm_per_timestep
from respike_neuro.models.snn import ConvBN, conv_bn_sequence


def _bn(momentum: float | None, c: int = 5) -> nn.BatchNorm2d:
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(c, momentum=momentum).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    bn.num_batches_tracked.fill_(3)
    return bn


def _sequence(t: int = 4, n: int = 3, c: int = 5) -> torch.Tensor:
    torch.manual_seed(1)
    # each timestep its own offset and scale: pooled statistics would differ visibly
    scale = torch.linspace(0.5, 3.0, t, dtype=torch.float64).view(t, 1, 1, 1, 1)
    shift = torch.linspace(-2.0, 2.0, t, dtype=torch.float64).view(t, 1, 1, 1, 1)
    return (torch.randn(t, n, c, 6, 7, dtype=torch.float64) * scale + shift).requires_grad_()


@pytest.mark.parametrize("momentum", [0.1, None])
def test_equals_one_bn_call_per_timestep(momentum):
    bn_loop, bn_ours = _bn(momentum), _bn(momentum)
    x = _sequence()
    loop = torch.stack([bn_loop(x[t]) for t in range(x.shape[0])])  # the authors' T calls
    ours = batch_norm_per_timestep(bn_ours, x)
    torch.testing.assert_close(ours, loop, rtol=1e-12, atol=1e-12)
    for name in ("running_mean", "running_var"):
        torch.testing.assert_close(getattr(bn_ours, name), getattr(bn_loop, name), rtol=1e-12, atol=1e-14)
    assert bn_ours.num_batches_tracked.item() == bn_loop.num_batches_tracked.item() == 3 + x.shape[0]

    w = torch.randn_like(loop)
    g_loop = torch.autograd.grad((loop * w).sum(), [x, bn_loop.weight, bn_loop.bias])
    g_ours = torch.autograd.grad((ours * w).sum(), [x, bn_ours.weight, bn_ours.bias])
    for a, b in zip(g_ours, g_loop):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_differs_from_time_folded_statistics_in_training():
    x = _sequence()
    folded = _bn(0.1)(x.flatten(0, 1)).view_as(x)
    ours = batch_norm_per_timestep(_bn(0.1), x)
    assert (ours - folded).abs().max() > 0.1  # the test inputs do tell the two networks apart


def test_conv_bn_sequence_modes():
    torch.manual_seed(2)
    unit = ConvBN(3, 4, 3).double()
    x = _sequence(c=3).detach()
    per_t, folded = copy.deepcopy(unit), copy.deepcopy(unit)
    y = conv_bn_sequence(per_t, x, "per_timestep")
    ref = torch.stack([unit(x[t]) for t in range(x.shape[0])])
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(per_t[1].running_var, unit[1].running_var, rtol=1e-12, atol=1e-14)
    assert not torch.allclose(conv_bn_sequence(folded, x, "folded"), y)
    # eval mode: running statistics, the same for both settings (BN folding depends on it)
    for m in (per_t, folded):
        m.eval()
    eval_per_t, eval_folded = (conv_bn_sequence(per_t, x, mode) for mode in ("per_timestep", "folded"))
    torch.testing.assert_close(eval_per_t, eval_folded)


def test_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"expected \(T, N, 5, H, W\)"):
        batch_norm_per_timestep(_bn(0.1), torch.zeros(2, 3, 4, 5, 5, dtype=torch.float64))
