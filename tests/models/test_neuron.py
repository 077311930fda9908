import math

import pytest
import torch
from respike_tests_helpers import AuthorsATan

from respike_neuro.models.neuron import (
    LIF,
    SnnTorchLIF,
    atan_surrogate,
    lif_step,
    make_lif,
    membrane_alpha,
)

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


def _authors_lif(x: torch.Tensor) -> torch.Tensor:
    """The authors' LIFNode(tau=4/3, v_th=1, v_reset=0, ATan, detach_reset=True) in their units."""
    u, out = torch.zeros_like(x[0]), []
    for t in range(x.shape[0]):
        u = u + (x[t] - u) / (4.0 / 3.0)  # decay_input: u <- 0.25 u + 0.75 x
        s = AuthorsATan.apply(u - 1.0)
        out.append(s)
        u = u * (1 - s.detach())
    return torch.stack(out)


@pytest.mark.parametrize("backend", ["fused", "snntorch"])
def test_one_step_gradient_is_the_closed_form_of_the_authors_atan(backend):
    # one timestep: dS/dx = d/dx ATan_2(0.75 x - 1) = 0.75 / (1 + (pi (0.75 x - 1))^2)
    x = torch.linspace(-1.0, 3.0, 401, dtype=torch.float64).view(1, -1).requires_grad_()
    neuron = make_lif(backend, beta=BETA, threshold=THETA, alpha=2.0).double()
    (grad,) = torch.autograd.grad(neuron(x).sum(), x)
    closed = 0.75 / (1.0 + (math.pi * (0.75 * x.detach() - 1.0)) ** 2)
    # snnTorch keeps theta as a float32 buffer (4/3 rounded at 6e-8): hence its looser tolerance
    tol = 1e-12 if backend == "fused" else 1e-6
    torch.testing.assert_close(grad, closed, rtol=tol, atol=tol)
    assert grad.max().item() == pytest.approx(0.75, rel=1e-3)  # at theta; alpha = 2 on h would peak at 1


def test_fused_gradient_equals_the_authors_neuron_over_time():
    torch.manual_seed(1)
    x = (torch.randn(5, 2, 3, 4, 4, dtype=torch.float64) * 1.5).requires_grad_()
    weights = torch.randn(5, 2, 3, 4, 4, dtype=torch.float64)
    ref = _authors_lif(x)
    ours = LIF(beta=BETA, threshold=THETA, alpha=2.0)(x)
    assert torch.equal(ours, ref)
    (g_ref,) = torch.autograd.grad((ref * weights).sum(), x)
    (g_ours,) = torch.autograd.grad((ours * weights).sum(), x)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-12, atol=1e-14)
    assert g_ours.abs().sum() > 0


def test_membrane_alpha_is_the_authors_alpha_on_the_unscaled_membrane():
    assert membrane_alpha(2.0, 0.25) == pytest.approx(1.5)
    assert membrane_alpha(2.0, 0.0) == pytest.approx(2.0)  # no input scaling when beta = 0


def test_atan_surrogate_peak_and_shape():
    assert atan_surrogate(torch.tensor(0.0), 2.0).item() == pytest.approx(1.0)
    assert atan_surrogate(torch.tensor(1.0), 2.0).item() == pytest.approx(1 / (1 + math.pi**2))


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="'spikingjelly'"):
        make_lif("spikingjelly", beta=BETA, threshold=THETA, alpha=2.0)
