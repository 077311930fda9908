"""The one LIF neuron of the project, for every layer and every simulator.

    v[t] = beta * v[t-1] + I[t]          (v[-1] = 0; state never crosses a segment)
    s[t] = H(v[t] - theta)               (spike if v > theta)
    v[t] <- v[t] * (1 - s[t])            (hard reset to 0 in the same step, reset detached)

beta = 0.25, theta = 4/3 is the authors' spikingjelly neuron (v <- 0.25 v + 0.75 x, v >= 1). It
spikes on v >= theta, we on v > theta, as NIR and Lava do: with real-valued inputs a tie has
measure zero (0 flips in 12 M neuron-steps against the authors' code, float64).

Surrogate gradient: spikingjelly's ATan(alpha) on ITS membrane. spikingjelly's LIFNode with
tau = 1/(1 - beta) and decay_input scales the input, u = (1 - beta) * v, and its surrogate is
dS/du = (alpha/2) / (1 + (pi/2 * alpha * (u - u_th))^2). In our unscaled membrane v that is

    dS/dv = (a/2) / (1 + (pi/2 * a * (v - theta))^2),   a = (1 - beta) * alpha   (`membrane_alpha`)

so `alpha` is given in the authors' units (their default alpha = 2 is a = 1.5 here) and the
gradient is theirs, not merely the same shape (tests/models/test_neuron.py checks it against the
closed form of their ATan and tests/models/test_authors_semantics.py against a spikingjelly-style
step loop).

Two interchangeable implementations over a whole (T, ...) sequence:
- `lif_sequence` (default, "fused"): a hand-written autograd Function. It loops over T in the
  forward pass without building a graph and keeps only the pre-reset membrane (one tensor per
  layer) for the backward recurrence; snnTorch keeps several tensors per timestep.
- `SnnTorchLIF` ("snntorch"): snnTorch's `Leaky(reset_mechanism="zero", reset_delay=False)`
  stepped over T. Its spikes are identical; its gradient differs in one respect: snnTorch
  backpropagates through the reset (the spike in `mem - spk * mem` is not detached), while the
  authors' spikingjelly neuron (detach_reset=True) and the fused version do not.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def lif_step(
    v: torch.Tensor, current: torch.Tensor, beta: float, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """One timestep, no gradient bookkeeping: returns (spikes, membrane after reset)."""
    v = beta * v + current
    spikes = (v > threshold).to(current.dtype)
    return spikes, v * (1.0 - spikes)


def atan_surrogate(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Derivative of the ATan surrogate at x = v - theta, alpha in membrane units (`membrane_alpha`)."""
    return (alpha / 2.0) / (1.0 + (math.pi / 2.0 * alpha * x) ** 2)


def membrane_alpha(alpha: float, beta: float) -> float:
    """The authors' (spikingjelly) ATan sharpness `alpha` expressed on our unscaled membrane."""
    return (1.0 - beta) * alpha


class _LIFSequence(torch.autograd.Function):
    """Whole-sequence LIF. Only the pre-reset membrane h is kept; spikes are h > theta.

    Forward:  h[t] = I[t] + beta * h[t-1] * (h[t-1] <= theta)
    Backward: g[t] = dL/ds[t] * surrogate(h[t] - theta) + beta * (h[t] <= theta) * g[t+1],  dL/dI[t] = g[t]
    (the reset is detached, so a neuron that spiked passes no gradient to its own past); the
    surrogate's alpha here is already in membrane units.
    """

    @staticmethod
    def forward(ctx, current: torch.Tensor, beta: float, threshold: float, alpha: float) -> torch.Tensor:
        membrane = current.clone()
        for t in range(1, current.shape[0]):
            prev = membrane[t - 1]
            membrane[t].addcmul_(prev, prev.le(threshold), value=beta)  # beta * reset(prev): no float temp
        ctx.save_for_backward(membrane)
        ctx.constants = (beta, threshold, alpha)
        return torch.gt(membrane, threshold, out=torch.empty_like(membrane))  # no bool temporary

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor):
        (membrane,) = ctx.saved_tensors
        beta, threshold, alpha = ctx.constants
        # atan_surrogate(membrane - threshold, alpha) * grad_spikes computed in one buffer (the same
        # float operations: `a / y` on a tensor is y.reciprocal() * a), and the carry one step at a
        # time: one membrane-sized temporary instead of five
        grad = (membrane - threshold).mul_(math.pi / 2.0 * alpha).pow_(2).add_(1.0)
        grad = grad.reciprocal_().mul_(alpha / 2.0).mul_(grad_spikes)
        for t in range(grad.shape[0] - 2, -1, -1):
            grad[t].addcmul_(membrane[t].le(threshold), grad[t + 1], value=beta)
        return grad, None, None, None


def lif_sequence(current: torch.Tensor, *, beta: float, threshold: float, alpha: float = 2.0) -> torch.Tensor:
    """Spikes (T, ...) for input currents (T, ...), state starting at zero; alpha in the authors' units."""
    if current.dim() < 1 or current.shape[0] < 1:
        raise ValueError(f"LIF input needs a leading time axis, got shape {tuple(current.shape)}")
    return _LIFSequence.apply(current, beta, threshold, membrane_alpha(alpha, beta))


class LIF(nn.Module):
    """Multi-step LIF over a (T, ...) tensor with the project's fused implementation.

    `alpha` is the ATan sharpness in the authors' (spikingjelly) units; see the module docstring.
    """

    def __init__(self, *, beta: float, threshold: float, alpha: float = 2.0) -> None:
        super().__init__()
        self.beta, self.threshold, self.alpha = beta, threshold, alpha

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        return lif_sequence(current, beta=self.beta, threshold=self.threshold, alpha=self.alpha)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold:.4g}, alpha={self.alpha}"


class SnnTorchLIF(LIF):
    """The same neuron through snnTorch's Leaky, stepped over T (reference / cross-check)."""

    def __init__(self, *, beta: float, threshold: float, alpha: float = 2.0) -> None:
        super().__init__(beta=beta, threshold=threshold, alpha=alpha)
        import snntorch
        from snntorch import surrogate

        self.leaky = snntorch.Leaky(
            beta=beta,
            threshold=threshold,
            spike_grad=surrogate.atan(alpha=membrane_alpha(alpha, beta)),
            reset_mechanism="zero",
            reset_delay=False,
            learn_beta=False,
            learn_threshold=False,
        )
        # keep checkpoints interchangeable between backends: snnTorch's constants stay out of them
        for name, buffer in list(self.leaky.named_buffers(recurse=False)):
            self.leaky.register_buffer(name, buffer, persistent=False)

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        mem = torch.zeros_like(current[0])
        spikes = []
        for t in range(current.shape[0]):
            spk, mem = self.leaky(current[t], mem)
            spikes.append(spk)
        return torch.stack(spikes)


def make_lif(backend: str, *, beta: float, threshold: float, alpha: float) -> LIF:
    """Neuron factory: "fused" (default) or "snntorch"."""
    if backend == "fused":
        return LIF(beta=beta, threshold=threshold, alpha=alpha)
    if backend == "snntorch":
        return SnnTorchLIF(beta=beta, threshold=threshold, alpha=alpha)
    raise ValueError(f"unknown LIF backend {backend!r}; use 'fused' or 'snntorch'")
