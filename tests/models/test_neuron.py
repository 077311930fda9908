import math

import pytest
import torch

from respike_neuro.models.neuron import LIF, SnnTorchLIF, atan_surrogate, lif_step, make_lif

BETA, THETA = 0.25, 4.0 / 3.0


def test_hand_computed_trace():
    # v = 0.25 v + I ; spike if v > 4/3 ; hard reset to 0 in the same step
    current = torch.tensor([1.0, 1.0, 1.2, 0.0, 2.0, 4.0 / 3.0, 0.5]).view(7, 1)
    # v:  1.0, 1.25, 1.5125 -> spike, reset 0; 0.0; 2.0 -> spike, 0; 4/3 (not > theta); 0.8333
    expected = torch.tensor([0, 0, 1, 0, 1, 0, 0], dtype=torch.float32).view(7, 1)
    for neuron in (LIF(beta=BETA, threshold=THETA), SnnTorchLIF(beta=BETA, threshold=THETA)):
        assert torch.equal(neuron(current), expected), type(neuron).__name__


def test_equals_authors_neuron_with_input_scaling():
    # spikingjelly LIFNode(tau=4/3, v_th=1): v <- 0.25 v + 0.75 x, spike if v >= 1, reset 0
    x = torch.randn(20, 500) * 1.2
    v, ref = torch.zeros(500), []
    for t in range(20):
        v = 0.25 * v + 0.75 * x[t]
        s = (v >= 1.0).float()
        ref.append(s)
        v = v * (1 - s)
    ours = LIF(beta=BETA, threshold=THETA)(x)
    assert torch.equal(ours, torch.stack(ref))


def test_fused_matches_snntorch_spikes_and_stepwise_function():
    torch.manual_seed(0)
    x = torch.randn(6, 3, 4, 5, 5) * 1.5
    fused = LIF(beta=BETA, threshold=THETA)(x)
    assert torch.equal(fused, SnnTorchLIF(beta=BETA, threshold=THETA)(x))
    v, steps = torch.zeros_like(x[0]), []
    for t in range(6):
        s, v = lif_step(v, x[t], BETA, THETA)
        steps.append(s)
    assert torch.equal(fused, torch.stack(steps))
    assert 0.05 < fused.mean() < 0.5  # the test exercises both spiking and silent neurons


class _Heaviside(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x > 0).float()

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * atan_surrogate(x, 2.0)


def test_fused_gradient_equals_autograd_with_detached_reset():
    torch.manual_seed(1)
    x = (torch.randn(5, 2, 3, 4, 4) * 1.5).requires_grad_()
    weights = torch.randn(5, 2, 3, 4, 4)
    v, ref = torch.zeros_like(x[0]), []
    for t in range(5):
        v = BETA * v + x[t]
        s = _Heaviside.apply(v - THETA)
        ref.append(s)
        v = v * (1 - s.detach())
    (g_ref,) = torch.autograd.grad((torch.stack(ref) * weights).sum(), x)
    (g_ours,) = torch.autograd.grad((LIF(beta=BETA, threshold=THETA)(x) * weights).sum(), x)
    torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-6)
    assert g_ours.abs().sum() > 0


def test_atan_surrogate_peak_and_shape():
    assert atan_surrogate(torch.tensor(0.0), 2.0).item() == pytest.approx(1.0)
    assert atan_surrogate(torch.tensor(1.0), 2.0).item() == pytest.approx(1 / (1 + math.pi**2))


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="'spikingjelly'"):
        make_lif("spikingjelly", beta=BETA, threshold=THETA, alpha=2.0)
