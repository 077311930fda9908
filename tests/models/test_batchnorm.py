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


@pytest.mark.parametrize(
    "kind", ["float32", "channels_last", "no_affine", "no_running_stats", "bf16_autocast"]
)
def test_bit_for_bit_one_bn_call_per_timestep(kind):
    """The per-step kernels give exactly what T nn.BatchNorm2d calls give: outputs, input gradients,
    running statistics; weight and bias gradients to the order of their sum over t."""
    torch.manual_seed(3)
    bn = nn.BatchNorm2d(8, affine=kind != "no_affine", track_running_stats=kind != "no_running_stats")
    loop_bn = copy.deepcopy(bn)
    x = torch.randn(3, 4, 8, 6, 7)
    if kind == "channels_last":  # every frame NHWC, as train.memory_format channels_last lays them out
        x = x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    x.requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=kind == "bf16_autocast"):
        h = x.to(torch.bfloat16) if kind == "bf16_autocast" else x
        ours = batch_norm_per_timestep(bn, h)
        loop = torch.stack([loop_bn(h[t]) for t in range(3)])
    assert ours.dtype == loop.dtype and ours.stride() == h.stride()
    assert torch.equal(ours, loop)
    w = torch.randn_like(ours)  # laid out as the activations, as a real gradient is
    params = [p for p in (bn.weight, bn.bias) if p is not None]
    loop_params = [p for p in (loop_bn.weight, loop_bn.bias) if p is not None]
    g_ours = torch.autograd.grad((ours * w).sum(), [x, *params])
    g_loop = torch.autograd.grad((loop * w).sum(), [x, *loop_params])
    assert torch.equal(g_ours[0], g_loop[0])
    for a, b in zip(g_ours[1:], g_loop[1:]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    if bn.track_running_stats:
        assert torch.equal(bn.running_mean, loop_bn.running_mean)
        assert torch.equal(bn.running_var, loop_bn.running_var)
